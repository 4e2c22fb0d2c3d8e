// Package gateway is tailgate's HTTP gateway: agentgateway's standalone
// config format, served on the host network or on a tailnet, with network,
// JWT, external and rule-based authorization.
//
// # Overview
//
// `tailgate gateway -f config.yaml` reads an agentgateway config (binds →
// listeners → routes → backends, with route policies and
// frontendPolicies) and serves it. What it adds over agentgateway:
//
//   - a bind with `tailnet: true` is served by an embedded Tailscale node
//     (top-level `tailnet:` block), and rules can name the caller's node,
//     user and tags (source.tailscale.*) instead of trusting 100.64.0.0/10;
//   - every CEL rule is type-checked at load against its phase, so a rule
//     that could never match is an error, not a silent deny;
//   - remote JWKS are refetched on an unknown key id (rate limited);
//   - a reload compiles the whole new file before anything switches; a bad
//     file leaves the running config untouched and says why.
//   - request paths are normalized once before routing and forwarded
//     normalized (package pathnorm), so a route's policies cover every
//     spelling of its paths; client forwarding headers follow one trust
//     policy; request bodies have a read timeout.
//   - MCP backends (`backends[].mcp`, package mcp) federate stdio, streamable
//     HTTP and SSE MCP servers behind one endpoint, with names that stay
//     stable when a target is added, mcpAuthorization that filters lists
//     and refuses calls, and supervised stdio processes that never outlive
//     the config that started them.
//
// The shape follows Caddy: config (package config: YAML → structs, every
// duration and enum checked once) → compile (route tables, backends, and
// each listener's and route's policies compiled by their httppolicy
// modules: a snapshot) → serve (the current snapshot behind an atomic
// pointer; requests load it once and never see a half-applied config).
//
// Subpackages: config (the file), cel (CEL phases, expressions and rule
// sets: networkAuthorization, authorization, mcpAuthorization, extAuthz
// values), httppolicy (the policies of a `policies:` block, one module a
// key, run in phase order), pathnorm (request paths), mcp (MCP backends),
// h1pool (bodiless requests to plain-HTTP backends sent in the handler's
// goroutine over pooled connections, on net/http), handoff (the fast
// front's guard, below).
//
// # Two HTTP/1.1 fronts
//
// net/http's server costs most of what a request costs. A bind, HTTP or
// HTTPS (HTTP/1.1 over TLS, the only protocol offered there), whose
// routes all send to plain-HTTP backends under policies that read only a
// request's head (fastfront.go's fastFrontPolicies) is served by fasthttp
// first: a GET or HEAD or OPTIONS with no body, in a head package handoff
// found unambiguous, takes the same path as on net/http — routing,
// policies, access log, metrics, over an http.Request built from the head
// — and goes upstream through fasthttp's client. At the first request on
// a connection that is anything else (a body, an upgrade, HTTP/1.0, an
// odd byte), the connection goes to the bind's net/http server, unread
// bytes included, for the rest of its life. CONNECT binds and configs
// with tracing use net/http alone, as does Options.NoFastFront.
// The metric tailgate_gateway_fast_front_requests_total counts what the
// fast front served.
//
// # Usage
//
//	err := gateway.Run(ctx, gateway.Options{ConfigPath: "config.yaml", Logger: logger})
//
// or, to hold the gateway (tests, embedding):
//
//	g, err := gateway.New(gateway.Options{ConfigPath: path, AdminAddr: "127.0.0.1:0"})
//	if err := g.Start(ctx); err != nil { ... }
//	defer g.Close()
//
// # Order of policies on a request
//
// networkAuthorization (per connection, before TLS and HTTP) → headers
// named in Connection removed, forwarding headers set by the bind's trust
// policy → listener selection by Host → path normalization (400 for a
// refused path, requestpath.go) → route selection on the normalized path
// (Gateway API precedence) → for the
// listener's policies and then the route's, in httppolicy's phase order:
// localRateLimit (429) → cors (answers preflights) → jwtAuth (401) →
// extAuthz (the service's answer) → authorization (403) →
// requestHeaderModifier → responseHeaderModifier → backend, under the
// route's timeout (504). An MCP backend then applies the route's
// mcpAuthorization to each tool, prompt and resource (package mcp).
//
// # Operations
//
// The admin listener (Options.AdminAddr, else config.adminAddr, else
// 127.0.0.1:15000) serves /metrics (Prometheus), /healthz/ready,
// /config_dump (the loaded file with secrets redacted, and bind status),
// a read-only admin page at /ui (adminpage.go: the redacted config,
// routes and their policies, MCP targets' last-listed tools, request
// counts), and /debug/pprof/ when Options.Pprof is set.
// Each request produces one access-log line (text or JSON, per
// config.logging.format) on Options.AccessLog.
package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tailgate-dev/tailgate/internal/batchwrite"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
	"github.com/tailgate-dev/tailgate/internal/gateway/h1pool"
	"github.com/tailgate-dev/tailgate/internal/gateway/mcp"
	"github.com/tailgate-dev/tailgate/internal/gateway/spiffe"
	"github.com/tailgate-dev/tailgate/internal/pipe"
)

// Options configure a gateway.
type Options struct {
	// ConfigPath is the agentgateway-format YAML file. Required.
	ConfigPath string
	// ValidateOnly makes Run load and compile the file, then return.
	ValidateOnly bool
	// Logger receives operational messages (start, reload, errors).
	// nil means slog.Default().
	Logger *slog.Logger
	// AdminAddr is where /metrics, /healthz/ready, /config_dump and the
	// admin page (/ui) are served. Empty means config.adminAddr, else 127.0.0.1:15000. Port 0
	// picks a free port (see Gateway.AdminAddr); "off" disables it.
	AdminAddr string
	// BindHost is the host address binds listen on; empty means all
	// interfaces (as agentgateway's [::]). Tests use 127.0.0.1.
	BindHost string
	// AccessLog receives one line per request; nil means os.Stderr. Lines
	// to an *os.File are written in batches, each line within 50 ms of
	// its request (and all of them by Close).
	AccessLog io.Writer
	// ReloadInterval is how often the config file is checked for changes;
	// 0 means every second, negative disables watching.
	ReloadInterval time.Duration
	// MaxConfigBytes is the largest config file loaded or reloaded; 0
	// means config.DefaultMaxBytes (4 MiB).
	MaxConfigBytes int64
	// Pprof serves net/http/pprof's /debug/pprof/ on the admin listener,
	// for profiling under load. Off by default: a profile reveals request
	// data in memory, so turn it on only where the admin address is
	// private.
	Pprof bool
	// NoFastFront serves every bind with net/http alone, without the
	// fast front of HTTP and HTTPS binds (fastfront.go): an escape hatch
	// (`tailgate gateway --fast-front=false`) and for comparisons.
	NoFastFront bool

	// egressDial dials a tunnel's destination (egress.go); nil means
	// defaultEgressDial. Tests point hostnames at local servers with it.
	egressDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// egressRoots are the roots dynamic backends with backendTLS and no
	// root of their own verify upstreams against (mitm.go); nil means
	// the system's. Tests trust their local upstreams' CA with it.
	egressRoots *x509.CertPool
}

// Validate loads and compiles the config file at path without serving it.
// The error lists every problem with file, line and YAML path.
func Validate(path string) error {
	s, err := load(path, defaultDeps())
	s.close()
	return err
}

// Run serves the config at opts.ConfigPath until ctx is done, or only
// validates it when opts.ValidateOnly is set.
func Run(ctx context.Context, opts Options) error {
	if opts.ValidateOnly {
		return Validate(opts.ConfigPath)
	}
	g, err := New(opts)
	if err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		g.Close()
		return err
	}
	<-ctx.Done()
	return g.Close()
}

func defaultDeps() compileDeps {
	tr := newTransport()
	return compileDeps{transport: tr, h1pool: h1pool.New(tr, upstreamDialer.DialContext), fast: &fastClients{}, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func load(path string, deps compileDeps) (*snapshot, error) {
	data, err := config.ReadFile(path, deps.maxConfigBytes)
	if errors.Is(err, config.ErrLimit) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read gateway config: %w", err)
	}
	f, err := config.ParseWith(path, data, config.Limits{MaxBytes: deps.maxConfigBytes})
	if err != nil {
		return nil, err
	}
	return compile(path, data, f, deps)
}

// Gateway is a running gateway.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	deps    compileDeps
	metrics *metrics

	snap atomic.Pointer[snapshot]

	mu      sync.Mutex // serializes apply (start, reload, close)
	servers map[int]*bindServer
	tailnet *tailnetNode
	admin   *http.Server
	// extraAdmin serve config.statsAddr / config.readinessAddr.
	extraAdmin []*http.Server
	adminLn    net.Listener
	access     atomic.Pointer[slog.Logger]
	// accessText: access is slog's TextHandler on accessOut, whose lines
	// finish may write itself (slogtext).
	accessText atomic.Bool
	// accessOut is where access-log lines go: Options.AccessLog, through
	// accessBatch when that is a file, else under a lock (a line is one
	// Write, from slog's handler or from finish).
	accessOut   io.Writer
	accessBatch *batchwrite.Writer
	closed      bool
	// spiffeEndpoint is config.spiffe.endpoint at start ("" if none).
	spiffeEndpoint string
	stopWait       chan struct{}
	bg             sync.WaitGroup
	ready          atomic.Bool
	ctx            context.Context
}

// bindServer is one listening port.
type bindServer struct {
	port    int
	tailnet bool
	// internal: ln is a pipe.Listener, fed by connect binds (mitm.go).
	internal bool
	ln       net.Listener
	srv      *http.Server
	// fast is the bind's fast front (fastfront.go); nil when net/http alone
	// serves it.
	fast *fasthttp.Server
	// tunnels are the bind's open CONNECT tunnels (egress.go), closed
	// when the bind stops: Shutdown does not see hijacked connections.
	tunnels pipe.Group
}

// accessLogFlush is the longest an access-log line to a file waits.
const accessLogFlush = 50 * time.Millisecond

// New loads and compiles the config; nothing listens until Start.
func New(opts Options) (*Gateway, error) {
	if opts.ConfigPath == "" {
		return nil, errors.New("gateway: no config file given")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.AccessLog == nil {
		opts.AccessLog = os.Stderr
	}
	g := &Gateway{opts: opts, log: opts.Logger, deps: defaultDeps(), servers: map[int]*bindServer{}, stopWait: make(chan struct{})}
	g.accessOut = &lockedWriter{w: opts.AccessLog}
	if f, ok := opts.AccessLog.(*os.File); ok {
		// A write system call per request line is a tenth of a plain
		// request's CPU: lines to a file or stream go out in batches,
		// each within accessLogFlush (Close writes the rest).
		g.accessBatch = batchwrite.New(f, 64<<10, accessLogFlush)
		g.accessOut = g.accessBatch
	}
	g.metrics = newMetrics()
	g.deps.mcpMetrics = mcp.NewMetrics(g.metrics.reg)
	g.deps.mcpSessions = mcp.NewSessionStore()
	g.deps.log = opts.Logger
	g.deps.maxConfigBytes = opts.MaxConfigBytes
	g.deps.egressDial, g.deps.egressRoots = opts.egressDial, opts.egressRoots
	g.deps.accessLog = func() *slog.Logger { return g.access.Load() }
	g.deps.spiffe = &spiffe.Workload{}
	s, err := load(opts.ConfigPath, g.deps)
	if err != nil {
		return nil, err
	}
	if err := g.connectSpiffe(s); err != nil {
		s.close()
		return nil, err
	}
	g.snap.Store(s)
	g.setAccessLog(s)
	return g, nil
}

// connectSpiffe connects to config.spiffe's Workload API, once, at start.
// An unreachable agent is a start error, as in agentgateway: a gateway
// that came up without its identity could serve none of its tls.spiffe
// listeners nor reach its backendTLS.spiffe upstreams.
func (g *Gateway) connectSpiffe(s *snapshot) error {
	g.spiffeEndpoint = spiffeEndpoint(s)
	if g.spiffeEndpoint == "" {
		return nil
	}
	src, err := spiffe.Connect(context.Background(), g.spiffeEndpoint)
	if err != nil {
		return fmt.Errorf("%s: config.spiffe: %w", g.opts.ConfigPath, err)
	}
	g.deps.spiffe.Attach(src)
	return nil
}

func spiffeEndpoint(s *snapshot) string {
	if c := s.file.Config; c != nil && c.Spiffe != nil {
		return c.Spiffe.Endpoint
	}
	return ""
}

func (g *Gateway) setAccessLog(s *snapshot) {
	var h slog.Handler
	if s.logFormat == "json" {
		h = slog.NewJSONHandler(g.accessOut, nil)
	} else {
		h = slog.NewTextHandler(g.accessOut, nil)
	}
	g.access.Store(slog.New(h))
	g.accessText.Store(s.logFormat != "json")
}

// lockedWriter serializes writes to a writer that may not be safe for
// concurrent use.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Start opens the admin listener and every bind, starts the tailnet node
// if a bind needs it, and begins watching the config file.
func (g *Gateway) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ctx = ctx
	if err := g.startAdmin(); err != nil {
		return err
	}
	if err := g.applyLocked(ctx, g.snap.Load(), true); err != nil {
		return err
	}
	g.ready.Store(true)
	if g.opts.ReloadInterval >= 0 {
		g.bg.Add(1)
		go g.watch()
	}
	return nil
}

// applyLocked makes s the serving config: opens binds s adds (and the
// tailnet node if first needed), swaps the pointer, then closes binds s
// dropped. If anything fails before the swap, the old config keeps
// serving and nothing opened for s stays open.
func (g *Gateway) applyLocked(ctx context.Context, s *snapshot, first bool) error {
	needTailnet := false
	for _, b := range s.binds {
		needTailnet = needTailnet || b.tailnet
	}
	if g.tailnet != nil && s.file.Tailnet != nil && !reflect.DeepEqual(g.tailnet.cfg, *s.file.Tailnet) {
		return errors.New("the tailnet: block changed; restart the gateway to apply it")
	}
	if spiffeEndpoint(s) != g.spiffeEndpoint {
		return errors.New("config.spiffe changed; restart the gateway to apply it")
	}
	startedTailnet := false
	if needTailnet && g.tailnet == nil {
		tn, err := startTailnet(ctx, *s.file.Tailnet, func(string, ...any) {})
		if err != nil {
			return err
		}
		g.tailnet, startedTailnet = tn, true
		g.log.Info("joined tailnet", "hostname", s.file.Tailnet.Hostname, "ip", tn.node.IPv4())
	}
	var opened []*bindServer
	rollback := func() {
		for _, bs := range opened {
			bs.ln.Close()
		}
		if startedTailnet {
			g.tailnet.close()
			g.tailnet = nil
		}
	}
	ports := make([]int, 0, len(s.binds))
	for p := range s.binds {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	for _, port := range ports {
		bt := s.binds[port]
		if cur, ok := g.servers[port]; ok && cur.tailnet == bt.tailnet && cur.internal == bt.internal {
			continue
		} else if ok {
			rollback()
			return fmt.Errorf("bind %d moved between host, tailnet and internal; restart the gateway to apply it", port)
		}
		var ln net.Listener
		var err error
		if bt.internal {
			ln = pipe.NewListener(tunnelAddr(port)) // opened on no network: fed by connect binds
		} else if bt.tailnet {
			ln, err = g.tailnet.listen(port)
		} else {
			ln, err = net.Listen("tcp", net.JoinHostPort(g.opts.BindHost, fmt.Sprint(port)))
		}
		if err != nil {
			rollback()
			return fmt.Errorf("bind %d: %w", port, err)
		}
		opened = append(opened, &bindServer{port: port, tailnet: bt.tailnet, internal: bt.internal, ln: ln})
	}
	prev := g.snap.Swap(s)
	g.setAccessLog(s)
	if prev != s {
		// The replaced config's MCP targets (stdio processes) stop now;
		// the new config starts its own on first use.
		g.bg.Add(1)
		go func() { defer g.bg.Done(); prev.close() }()
	}
	for _, bs := range opened {
		g.serve(bs)
		where := "host"
		if bs.tailnet {
			where = "tailnet"
		} else if bs.internal {
			where = "internal (CONNECT tunnels only)"
		}
		g.log.Info("started bind", "bind", fmt.Sprintf("bind/%d", bs.port), "network", where, "addr", bs.ln.Addr().String())
	}
	for port, bs := range g.servers {
		if _, keep := s.binds[port]; !keep {
			delete(g.servers, port)
			go bs.shutdown()
			g.log.Info("stopped bind", "bind", fmt.Sprintf("bind/%d", port))
		}
	}
	// A tailnet node no bind uses any more is kept: leaving and rejoining
	// on every reload would only churn its identity.
	_ = first
	return nil
}

func (bs *bindServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if bs.fast != nil {
		// Stops accepting, closes idle connections and waits for the
		// rest; handed-off connections are net/http's to drain.
		bs.fast.ShutdownWithContext(ctx)
	}
	bs.srv.Shutdown(ctx)
	bs.tunnels.Close()
}

// Reload reads and compiles the config file and, if it is good, swaps it
// in. On any error the running config is unchanged.
func (g *Gateway) Reload() error {
	s, err := load(g.opts.ConfigPath, g.deps)
	if err != nil {
		g.metrics.reloads.WithLabelValues("error").Inc()
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		s.close()
		return errors.New("gateway is closed")
	}
	if err := g.applyLocked(g.ctx, s, false); err != nil {
		s.close()
		g.metrics.reloads.WithLabelValues("error").Inc()
		return err
	}
	g.metrics.reloads.WithLabelValues("ok").Inc()
	return nil
}

// watch polls the config file and reloads when its content changes.
// Polling (not inotify) also sees editors that replace the file and
// Kubernetes ConfigMap symlink swaps.
func (g *Gateway) watch() {
	defer g.bg.Done()
	every := g.opts.ReloadInterval
	if every == 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := g.snap.Load().hash
	for {
		select {
		case <-g.stopWait:
			return
		case <-t.C:
		}
		data, err := config.ReadFile(g.opts.ConfigPath, g.deps.maxConfigBytes)
		if err != nil && !errors.Is(err, config.ErrLimit) {
			continue // mid-replace; the next tick sees the new file
		}
		// A file over the size limit is not read; it hashes by its size, so
		// Reload refuses it and logs why once, not on every tick, and not
		// confused with an empty file (a writer truncates before writing).
		if errors.Is(err, config.ErrLimit) {
			data = []byte("\x00over the size limit")
			if st, serr := os.Stat(g.opts.ConfigPath); serr == nil {
				data = fmt.Appendf(data, ":%d", st.Size())
			}
		}
		h := sha256.Sum256(data)
		if h == last {
			continue
		}
		last = h
		if err := g.Reload(); err != nil {
			g.log.Error("config reload failed; still serving the previous config", "file", g.opts.ConfigPath, "error", err)
			continue
		}
		g.log.Info("config reloaded", "file", g.opts.ConfigPath)
	}
}

// BindAddr is the address bind port is listening on (host or tailnet).
func (g *Gateway) BindAddr(port int) (net.Addr, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	bs, ok := g.servers[port]
	if !ok || bs.internal {
		return nil, false
	}
	return bs.ln.Addr(), true
}

// TailnetIPv4 is the gateway node's tailnet address, if it has joined one.
func (g *Gateway) TailnetIPv4() (addr string, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tailnet == nil {
		return "", false
	}
	return g.tailnet.node.IPv4().String(), true
}

// AdminAddr is where the admin endpoints listen, if enabled.
func (g *Gateway) AdminAddr() string {
	if g.adminLn == nil {
		return ""
	}
	return g.adminLn.Addr().String()
}

// Close stops listening, lets in-flight requests finish (up to 10 s) and
// leaves the tailnet.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.ready.Store(false)
	close(g.stopWait)
	servers := g.servers
	g.servers = map[int]*bindServer{}
	g.mu.Unlock()
	g.bg.Wait()
	var wg sync.WaitGroup
	for _, bs := range servers {
		wg.Add(1)
		go func() { defer wg.Done(); bs.shutdown() }()
	}
	wg.Wait()
	if g.admin != nil {
		g.admin.Close()
	}
	for _, s := range g.extraAdmin {
		s.Close()
	}
	g.snap.Load().close() // MCP targets: no stdio process outlives the gateway
	var err error
	if g.tailnet != nil {
		err = g.tailnet.close()
	}
	g.deps.h1pool.CloseIdleConnections() // and the transport's
	g.deps.fast.closeIdle()
	if g.accessBatch != nil {
		g.accessBatch.Close()
	}
	g.deps.spiffe.Close()
	return err
}
