// Package run gives every browser run its own stay on the customer's
// tailnet: an ephemeral node, a warm path to the targets, and a loopback
// proxy that is the run's only way out.
//
// # Overview
//
// [Manager.Start] opens the environment's sealed credential (package
// connect), mints a single-use, ephemeral, pre-authorized auth key, joins a
// node tagged tag:tailgate-<env> with subnet routes accepted, warms the
// path to every target (a disco ping to the peer that serves it, then a TCP
// probe: a freshly joined node's first connection can otherwise stall for
// seconds while peers learn its keys), and starts an [egress.Proxy] on
// 127.0.0.1 that reaches only the environment's targets, resolves only
// through the tailnet and dials only through it. The run is ready only
// then; its Info says how long warming took.
//
// Where the node lives is the run's placement. On the server (the
// default) it is as above. On a runner's host ([PlacementRunner]), Start
// only mints the key: the runner's host joins with the [JoinTicket] in the
// start answer, and runs the proxy itself ([StartLocal], from package
// runner). Where the control's stored key is reusable (headscale) and must
// not leave the servers, a runner's run stays on the server and the runner
// reaches its proxy through an authenticated relay ([PlacementRelay],
// [Manager.RelayAddr]).
//
// A run ends when its owner ends it ([Manager.End]), when it reaches its
// maximum lifetime, or when its lease lapses: a client that stops sending
// heartbeats (killed with SIGKILL, say) loses its run at the next sweep.
// Ending logs the node out, which removes it from the tailnet. Runs left
// open by a crashed server are marked ended by the first sweep after
// restart; their nodes are ephemeral and the control server removes them.
//
// # Usage
//
//	m := &run.Manager{Connect: svc, Store: st}
//	go m.Sweep(ctx, 5*time.Second)
//	info, err := m.Start(ctx, orgID, "staging", run.Options{})
//	// HTTP_PROXY=info.ProxyURL chromium ...
//	m.End(ctx, orgID, info.ID, "done")
package run

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

// Defaults for a Manager's zero fields.
const (
	DefaultMaxLifetime = time.Hour
	DefaultLease       = 30 * time.Second
	warmTimeout        = 10 * time.Second
)

// States a run goes through.
const (
	StateReady = "ready"
	StateEnded = "ended"
)

// Manager starts, tracks and ends runs. Set its fields before use.
type Manager struct {
	// Connect opens environments' credentials (a *connect.Service).
	Connect CredentialOpener
	// Store records runs (a *store.Store).
	Store  Store
	Logger *slog.Logger
	// MaxLifetime caps every run; DefaultMaxLifetime when zero.
	MaxLifetime time.Duration
	// Lease is how long a run lives without a heartbeat; DefaultLease when
	// zero, negative to disable.
	Lease time.Duration

	mu   sync.Mutex
	runs map[string]*session
}

// CredentialOpener opens an environment's stored credential, with which a
// run's node joins the tailnet.
type CredentialOpener interface {
	OpenCredential(ctx context.Context, orgID, env string) (connect.Credential, error)
}

// Store is what the manager records of runs.
type Store interface {
	CreateRun(ctx context.Context, orgID string, r store.Run) (store.Run, error)
	UpdateRun(ctx context.Context, orgID, id, state, node, nodeID, proxyAddr string) error
	GetRun(ctx context.Context, orgID, id string) (store.Run, error)
	EndRun(ctx context.Context, orgID, id, reason string) error
	OpenRuns(ctx context.Context) ([]store.Run, error)
}

// Options for one run.
type Options struct {
	// Lifetime is the run's maximum lifetime, capped by the Manager's.
	Lifetime time.Duration
	// NoLease exempts the run from heartbeats: it lives until ended or
	// past its lifetime. For a run the server itself holds (the demo's).
	NoLease bool
	// Placement asks where the run's node and proxy live: PlacementServer
	// (the default) or PlacementRunner, on the runner's host. A runner run
	// on a control that cannot mint single-use keys (headscale) is placed
	// on the server and reached through a relay (PlacementRelay).
	Placement string
}

// Placements of a run.
const (
	// PlacementServer: the node and proxy live in this server; the proxy
	// listens on its loopback.
	PlacementServer = "server"
	// PlacementRunner: the runner's host joins with a single-use key minted
	// for this run (Info.Join) and runs the proxy itself.
	PlacementRunner = "runner"
	// PlacementRelay: the node and proxy live in this server, and the
	// runner reaches the proxy through an authenticated relay (Info.Relay),
	// because the control's stored credential is reusable and must never
	// leave the servers.
	PlacementRelay = "relay"
)

// JoinTicket is how a runner's host joins the tailnet for one run. It is
// in the start answer only, to the principal that started the run; it is
// never stored or logged.
type JoinTicket struct {
	ControlURL string    `json:"control_url,omitempty"`
	AuthKey    string    `json:"auth_key"`
	Hostname   string    `json:"hostname"`
	Tags       []string  `json:"tags,omitempty"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// LogValue keeps the key out of logs.
func (j JoinTicket) LogValue() slog.Value {
	return slog.GroupValue(slog.String("hostname", j.Hostname), slog.String("auth_key", "[redacted]"))
}

// RelayTicket is how a runner reaches a relayed run's proxy: an upgraded
// connection to Path with the token. Start answer only; only the token's
// hash is kept.
type RelayTicket struct {
	Path  string `json:"path"`
	Token string `json:"token"`
}

// Info describes a run; it holds no secret.
type Info struct {
	ID        string         `json:"id"`
	Env       string         `json:"environment"`
	State     string         `json:"state"`
	ProxyURL  string         `json:"proxy_url,omitempty"`
	ProxyAddr string         `json:"proxy_addr,omitempty"`
	Node      string         `json:"node,omitempty"`
	NodeIP    string         `json:"node_ip,omitempty"`
	StartedAt time.Time      `json:"started_at"`
	ExpiresAt time.Time      `json:"expires_at"`
	EndedAt   *time.Time     `json:"ended_at,omitempty"`
	EndReason string         `json:"end_reason,omitempty"`
	JoinMS    float64        `json:"join_ms,omitempty"`
	WarmMS    float64        `json:"warm_ms,omitempty"`
	Warm      []WarmResult   `json:"warm,omitempty"`
	Events    []egress.Event `json:"events,omitempty"`
	// Placement is where the node and proxy live (Placement*).
	Placement string `json:"placement"`
	// Targets are the environment's targets, host:port, for a runner that
	// runs the proxy itself.
	Targets []string `json:"targets,omitempty"`
	// Join and Relay are set in the start answer of a runner run only.
	Join  *JoinTicket  `json:"join,omitempty"`
	Relay *RelayTicket `json:"relay,omitempty"`
}

// WarmResult is how warming the path to one target went.
type WarmResult struct {
	Target string  `json:"target"`
	OK     bool    `json:"ok"`
	MS     float64 `json:"ms"`
	Error  string  `json:"error,omitempty"`
}

type session struct {
	info    Info
	orgID   string
	node    *tailnet.Node
	proxy   *egress.Proxy
	leaseTo time.Time
	noLease bool
	// relayHash is the SHA-256 of a relayed run's relay token.
	relayHash []byte
	once      sync.Once
}

func (m *Manager) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (m *Manager) maxLifetime() time.Duration {
	if m.MaxLifetime > 0 {
		return m.MaxLifetime
	}
	return DefaultMaxLifetime
}

func (m *Manager) lease() time.Duration {
	if m.Lease == 0 {
		return DefaultLease
	}
	return m.Lease
}

// Error is a run that could not start or be found, with a stable code.
type Error struct {
	Code    errcode.Code // from the one registry (package errcode)
	Message string
	Err     error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Start starts a run of env. On the server (the default), it returns once
// the run's node has joined, the path to its targets is warm and its proxy
// listens. On a runner, it returns the ticket the runner joins with.
func (m *Manager) Start(ctx context.Context, orgID, env string, opts Options) (Info, error) {
	log := m.logger().With("org", orgID, "env", env)
	switch opts.Placement {
	case "", PlacementServer, PlacementRunner:
	default:
		return Info{}, &Error{Code: errcode.BadInput, Message: fmt.Sprintf("placement %q: want server or runner", opts.Placement)}
	}
	cred, err := m.Connect.OpenCredential(ctx, orgID, env)
	if err != nil {
		return Info{}, err
	}
	lifetime := m.maxLifetime()
	if opts.Lifetime > 0 && opts.Lifetime < lifetime {
		lifetime = opts.Lifetime
	}
	rec, err := m.Store.CreateRun(ctx, orgID, store.Run{EnvID: cred.Env.ID, ExpiresAt: time.Now().Add(lifetime)})
	if err != nil {
		return Info{}, &Error{Code: errcode.Internal, Message: "record run: " + err.Error(), Err: err}
	}
	fail := func(e error) (Info, error) {
		m.Store.EndRun(context.WithoutCancel(ctx), orgID, rec.ID, "failed to start: "+e.Error())
		log.Warn("run failed to start", "run", rec.ID, "err", e)
		return Info{}, e
	}
	s := &session{orgID: orgID, noLease: opts.NoLease}
	s.info = Info{ID: rec.ID, Env: env, StartedAt: rec.StartedAt, ExpiresAt: rec.ExpiresAt, Placement: PlacementServer}
	for _, t := range cred.Conn.Targets {
		s.info.Targets = append(s.info.Targets, t.String())
	}
	var join *JoinTicket
	var relay *RelayTicket
	switch {
	case opts.Placement == PlacementRunner && cred.SingleUseKeys():
		if join, err = m.ticket(ctx, cred, s); err != nil {
			return fail(err)
		}
	default:
		if err := m.startHere(ctx, log, cred, s); err != nil {
			return fail(err)
		}
		if opts.Placement == PlacementRunner {
			relay = newRelay(s)
		}
	}
	s.info.State = StateReady
	s.leaseTo = time.Now().Add(m.lease())
	if err := m.Store.UpdateRun(ctx, orgID, rec.ID, StateReady, s.info.Node, "", s.info.ProxyAddr); err != nil {
		m.stop(s)
		return fail(&Error{Code: errcode.Internal, Message: "record run: " + err.Error(), Err: err})
	}
	m.mu.Lock()
	if m.runs == nil {
		m.runs = map[string]*session{}
	}
	m.runs[rec.ID] = s
	m.mu.Unlock()
	log.Info("run ready", "run", rec.ID, "placement", s.info.Placement, "node", s.info.Node, "proxy", s.info.ProxyAddr,
		"join_ms", s.info.JoinMS, "warm_ms", s.info.WarmMS)
	info := s.info
	info.Join, info.Relay = join, relay
	return info, nil
}

// ticket mints the single-use key a runner's host joins with for s.
func (m *Manager) ticket(ctx context.Context, cred connect.Credential, s *session) (*JoinTicket, error) {
	key, err := cred.MintKey(ctx, "run")
	if err != nil {
		return nil, err
	}
	o := cred.JoinOptions(key, "run")
	s.info.Placement, s.info.Node = PlacementRunner, o.Hostname
	return &JoinTicket{ControlURL: o.ControlURL, AuthKey: key.Key, Hostname: o.Hostname, Tags: o.Tags, ExpiresAt: key.Expires}, nil
}

// startHere joins s's node in this process, warms its paths and starts its
// proxy.
func (m *Manager) startHere(ctx context.Context, log *slog.Logger, cred connect.Credential, s *session) error {
	node, err := cred.Join(ctx, "run")
	if err != nil {
		return err
	}
	s.node = node
	s.info.Node, s.info.NodeIP, s.info.JoinMS = node.Hostname(), node.IPv4().String(), ms(node.JoinDuration())
	l, err := StartLocal(ctx, node, cred.Conn.Targets, log.With("run", s.info.ID))
	if err != nil {
		node.Close()
		return err
	}
	proxy, addr := l.Proxy, l.Addr
	s.info.Warm, s.info.WarmMS = l.Warm, l.WarmMS
	s.proxy = proxy
	s.info.ProxyAddr = addr.String()
	s.info.ProxyURL = "http://" + addr.String()
	return nil
}

// Get returns a run of orgID's, open or ended.
func (m *Manager) Get(ctx context.Context, orgID, id string) (Info, error) {
	m.mu.Lock()
	s := m.runs[id]
	m.mu.Unlock()
	if s != nil && s.orgID == orgID {
		info := s.info
		info.Events = s.events()
		return info, nil
	}
	r, err := m.Store.GetRun(ctx, orgID, id)
	if errors.Is(err, store.ErrNotFound) {
		return Info{}, &Error{Code: errcode.NotFound, Message: fmt.Sprintf("no run %q", id), Err: err}
	}
	if err != nil {
		return Info{}, &Error{Code: errcode.Internal, Message: err.Error(), Err: err}
	}
	info := Info{ID: r.ID, State: r.State, Node: r.NodeHostname, StartedAt: r.StartedAt, ExpiresAt: r.ExpiresAt, EndReason: r.EndReason}
	if !r.EndedAt.IsZero() {
		t := r.EndedAt
		info.EndedAt, info.State = &t, StateEnded
	}
	return info, nil
}

// Heartbeat extends an open run's lease.
func (m *Manager) Heartbeat(ctx context.Context, orgID, id string) (Info, error) {
	m.mu.Lock()
	s := m.runs[id]
	if s != nil && s.orgID == orgID {
		s.leaseTo = time.Now().Add(m.lease())
	}
	m.mu.Unlock()
	if s == nil || s.orgID != orgID {
		return m.Get(ctx, orgID, id)
	}
	return s.info, nil
}

// End ends an open run: its proxy closes and its node leaves the tailnet.
func (m *Manager) End(ctx context.Context, orgID, id, reason string) (Info, error) {
	m.mu.Lock()
	s := m.runs[id]
	if s != nil && s.orgID == orgID {
		delete(m.runs, id)
	} else {
		s = nil
	}
	m.mu.Unlock()
	if s == nil {
		return m.Get(ctx, orgID, id)
	}
	m.stop(s)
	if err := m.Store.EndRun(context.WithoutCancel(ctx), orgID, id, reason); err != nil && !errors.Is(err, store.ErrNotFound) {
		m.logger().Error("record run end", "run", id, "err", err)
	}
	m.logger().Info("run ended", "run", id, "env", s.info.Env, "reason", reason)
	info := s.info
	info.Events = s.events()
	now := time.Now().UTC()
	info.State, info.EndedAt, info.EndReason = StateEnded, &now, reason
	return info, nil
}

func (m *Manager) stop(s *session) {
	s.once.Do(func() {
		if s.proxy != nil {
			s.proxy.Close()
		}
		// Logging out removes the ephemeral node from the tailnet at once.
		// A runner's node is the runner's to close.
		if s.node != nil {
			s.node.Close()
		}
	})
}

// events are the proxy's events, when the proxy is this server's.
func (s *session) events() []egress.Event {
	if s.proxy == nil {
		return nil
	}
	return s.proxy.Events()
}

// Sweep ends runs past their lifetime or lease every interval until ctx is
// done, and marks runs that a previous server process left open as ended.
func (m *Manager) Sweep(ctx context.Context, every time.Duration) {
	m.SweepOrphans(ctx)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.SweepOnce(ctx)
		}
	}
}

// SweepOnce ends every run past its lifetime or lease.
func (m *Manager) SweepOnce(ctx context.Context) {
	now := time.Now()
	type due struct{ org, id, reason string }
	var ended []due
	m.mu.Lock()
	for id, s := range m.runs {
		switch {
		case now.After(s.info.ExpiresAt):
			ended = append(ended, due{s.orgID, id, "maximum lifetime reached"})
		case m.lease() > 0 && !s.noLease && now.After(s.leaseTo):
			ended = append(ended, due{s.orgID, id, "lease expired: no heartbeat from the client"})
		}
	}
	m.mu.Unlock()
	for _, d := range ended {
		m.End(ctx, d.org, d.id, d.reason)
	}
}

// SweepOrphans ends runs recorded as open that this process does not hold:
// their server died. Their nodes were ephemeral and died with it.
func (m *Manager) SweepOrphans(ctx context.Context) {
	open, err := m.Store.OpenRuns(ctx)
	if err != nil {
		m.logger().Error("sweep: list open runs", "err", err)
		return
	}
	for _, r := range open {
		m.mu.Lock()
		_, live := m.runs[r.ID]
		m.mu.Unlock()
		if !live {
			m.Store.EndRun(ctx, r.OrgID, r.ID, "orphaned: the server that held it stopped")
		}
	}
}

// Close ends every open run.
func (m *Manager) Close() {
	m.mu.Lock()
	var all []*session
	for id, s := range m.runs {
		all = append(all, s)
		delete(m.runs, id)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(func() {
			m.stop(s)
			m.Store.EndRun(context.Background(), s.orgID, s.info.ID, "server shutting down")
		})
	}
	wg.Wait()
}

// Open lists the open runs, for metrics and tests.
func (m *Manager) Open() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.runs)
}

// Local is a run's node's proxy on the host the node joined from.
type Local struct {
	Proxy  *egress.Proxy
	Addr   netip.AddrPort
	Warm   []WarmResult
	WarmMS float64
}

// StartLocal warms node's paths to targets and starts the run's proxy in
// front of it, on this host's loopback. The run manager does it for runs
// on the server; package runner for runs on a runner's host.
func StartLocal(ctx context.Context, node *tailnet.Node, targets []target.Target, log *slog.Logger) (Local, error) {
	start := time.Now()
	l := Local{Warm: warm(ctx, node, targets)}
	l.WarmMS = ms(time.Since(start))
	path := tailnetPath{node}
	proxy, err := egress.New(egress.Options{Targets: targets, Resolver: path, Dialer: path, Logger: log})
	if err != nil {
		return Local{}, &Error{Code: errcode.Internal, Message: "start proxy: " + err.Error(), Err: err}
	}
	if l.Addr, err = proxy.Start(); err != nil {
		return Local{}, &Error{Code: errcode.Internal, Message: "start proxy: " + err.Error(), Err: err}
	}
	l.Proxy = proxy
	return l, nil
}

// warm makes the node's first real connection to each target fast: the
// node warms the path to the peer serving the target (tailnet.WarmPath),
// then a TCP probe opens it end to end.
func warm(ctx context.Context, node *tailnet.Node, targets []target.Target) []WarmResult {
	ctx, cancel := context.WithTimeout(ctx, warmTimeout)
	defer cancel()
	res := make([]WarmResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			start := time.Now()
			err := warmOne(ctx, node, t)
			res[i] = WarmResult{Target: t.String(), OK: err == nil, MS: ms(time.Since(start))}
			if err != nil {
				res[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	return res
}

func warmOne(ctx context.Context, node *tailnet.Node, t target.Target) error {
	addrs, err := node.LookupNetIP(ctx, t.Host)
	if err != nil {
		return err
	}
	dst := addrs[0]
	if err := node.WarmPath(ctx, dst); err != nil {
		return err
	}
	c, err := node.DialTCP(ctx, netip.AddrPortFrom(dst, t.Port))
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// tailnetPath adapts a node to the proxy's Resolver and Dialer, translating
// the node's refusals into the proxy's reasons.
type tailnetPath struct{ n *tailnet.Node }

func (p tailnetPath) LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return p.n.LookupNetIP(ctx, host) // its not-found error is egress's
}

func (p tailnetPath) DialContext(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	c, err := p.n.DialTCP(ctx, addr)
	var nr *tailnet.NotRoutedError
	if errors.As(err, &nr) {
		return nil, fmt.Errorf("%w: %v", egress.ErrNotViaTailnet, err)
	}
	return c, err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
