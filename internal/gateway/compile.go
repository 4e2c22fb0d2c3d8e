package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
	"github.com/tailgate-dev/tailgate/internal/gateway/h1pool"
	"github.com/tailgate-dev/tailgate/internal/gateway/httppolicy"
	"github.com/tailgate-dev/tailgate/internal/gateway/mcp"
	"github.com/tailgate-dev/tailgate/internal/gateway/pathnorm"
	"github.com/tailgate-dev/tailgate/internal/gateway/spiffe"
)

// jwksRefetchInterval is the least time between JWKS refetches caused by
// an unknown key id. A variable so tests can rotate keys without waiting.
var jwksRefetchInterval = 10 * time.Second

// snapshot is one fully compiled config: immutable once built, swapped in
// whole behind Gateway.snap. Nothing on the request path parses or
// compiles.
type snapshot struct {
	file     *config.File
	source   []byte // the file as read, for the config dump
	hash     [32]byte
	loadedAt time.Time
	network  *cel.Set
	binds    map[int]*bindTable
	// egress are the gateways: entries tunnel binds hand to, by port.
	egress    map[int]*egressGateway
	logFormat string
	// warnings are load-time notes (rules that may deny more than meant);
	// logged when the snapshot is compiled, printed by --validate-only.
	warnings []string
	// accessLog shapes access-log lines (frontendPolicies.accessLog);
	// nil logs every request with the built-in fields.
	accessLog *accessLogSpec
	// http is frontendPolicies.http; applied when a bind starts.
	http config.FrontendHTTP
	// tracing exports request spans (config.tracing,
	// frontendPolicies.tracing); nil traces nothing.
	tracing *tracingSpec
	// accessLogOTLP exports access-log records over OTLP
	// (frontendPolicies.accessLog.otlp); nil exports nothing.
	accessLogOTLP *otlpLogSpec
	// mcp are the snapshot's MCP backends: they own stdio processes, so
	// a snapshot that is replaced or never served is closed.
	mcp []*mcp.Backend
	// owned are what policies hold open (remoteRateLimit's gRPC
	// connection), closed with the snapshot.
	owned []io.Closer
	// rawToken is set when an expression reads jwt.rawToken: only then
	// do a request's jwt.* carry the token (as a cel.Redacted).
	rawToken bool
	// readsRequest is set when an expression may read request.*: only
	// then is it taken, as it was, before the first policy ran
	// (requestSnapshot).
	readsRequest bool
}

// close stops what the snapshot owns (MCP targets and their processes).
func (s *snapshot) close() {
	if s == nil {
		return
	}
	for _, b := range s.mcp {
		b.Close()
	}
	s.tracing.close()
	s.accessLogOTLP.close()
	for _, o := range s.owned {
		o.Close()
	}
}

type bindTable struct {
	port    int
	tailnet bool
	https   bool
	// connect: the bind accepts only CONNECT tunnels (egress.go).
	connect bool
	// internal: the bind is never opened; connect binds hand it tunnels
	// to its port (mitm.go).
	internal  bool
	listeners []*listenerTable
	// trusted are the peers whose forwarding headers are believed
	// (forwarded.go); bodyTimeout bounds a request body, 0 for none
	// (bodyguard.go).
	trusted     []netip.Prefix
	bodyTimeout time.Duration
	// fastFront: the fast front may serve the bind's plain requests
	// (fastfront.go).
	fastFront bool
}

type listenerTable struct {
	name     string
	path     string // YAML path, for the admin page
	hostname string // "" any, "*.example.com" wildcard, or exact
	cert     *tls.Certificate
	// spiffeTLS serves the gateway's SVID and requires client SVIDs
	// (tls.spiffe); nil for a listener with PEM files.
	spiffeTLS *tls.Config
	minter    *leafMinter     // tls.mode: dynamicCa, instead of cert
	policies  *httppolicy.Set // run before the route's
	routes    []routeEntry    // sorted, most specific first
}

// routeEntry is one match of one route; a route with three matches has
// three entries, ranked independently as in the Gateway API.
type routeEntry struct {
	route *routeTable
	m     matcher
}

type routeTable struct {
	name           string
	key            string // "<listener>/<route>" for logs and metrics
	path           string // YAML path, for the admin page
	hostnames      []string
	policies       *httppolicy.Set
	backends       []weightedBackend
	totalWeight    int
	requestTimeout time.Duration // policies' timeout: 0 for none
	backendTimeout time.Duration
	// paths is the route's opt-out from path refusals (requestpath.go).
	paths pathnorm.Options
	// a2a marks Agent2Agent traffic (policies.a2a, a2a.go).
	a2a bool
}

type weightedBackend struct {
	Backend
	weight int
	// policies, when set, run instead of the route's: the route's with
	// the backend's own (backends[].policies) overlaid.
	policies *httppolicy.Set
}

type matcher struct {
	pathKind  int // 3 exact, 2 prefix, 1 regex
	path      string
	pathRe    *regexp.Regexp
	method    string
	headers   []valueMatcher
	query     []valueMatcher
	configIdx int
}

type valueMatcher struct {
	name  string
	exact *string
	re    *regexp.Regexp
}

func (v valueMatcher) matches(val string, ok bool) bool {
	if !ok {
		return false
	}
	if v.exact != nil {
		return val == *v.exact
	}
	return v.re.MatchString(val)
}

// compiler collects every problem in a config so one load reports all.
type compiler struct {
	file     string
	dir      string // relative paths in the config are relative to it
	deps     compileDeps
	errs     []error
	warns    []string
	backends map[string]Backend
	mcp      []*mcp.Backend
	// mcpSessionTTL is config.mcp.sessionTtl (0: the mcp default).
	mcpSessionTTL time.Duration
	owned         []io.Closer // handed over by policies (Own)
	// rawToken: some expression names jwt.rawToken, so requests carry it.
	rawToken bool
	// readsRequest: some expression may read request.* (snapshot).
	readsRequest bool
	// bindPort is the port of the bind being compiled: where dynamic
	// backends send requests.
	bindPort int
}

type compileDeps struct {
	transport http.RoundTripper
	// h1pool carries plain-HTTP backends' bodiless requests in the
	// handler's goroutine and the rest through transport.
	h1pool *h1pool.Pool
	// fast are the fast front's upstream clients (fastfront.go); nil: no
	// backend is sent to by the fast front.
	fast   *fastClients
	client *http.Client // for JWKS URLs and extAuthz
	// mcpMetrics and the loggers are the Gateway's; nil in Validate.
	mcpMetrics *mcp.Metrics
	// mcpSessions keeps MCP client sessions across reloads (nil in Validate).
	mcpSessions *mcp.SessionStore
	log         *slog.Logger
	accessLog   func() *slog.Logger
	// spiffe is the identity from config.spiffe (nil in Validate); it
	// lives as long as the Gateway, across reloads.
	spiffe *spiffe.Workload
	// maxConfigBytes bounds the config file read (0: config's default).
	maxConfigBytes int64
	// egressDial and egressRoots are Options' test hooks for dynamic
	// backends (mitm.go); nil: defaultEgressDial and the system's roots.
	egressDial  func(ctx context.Context, network, addr string) (net.Conn, error)
	egressRoots *x509.CertPool
}

// The compiler is httppolicy.Compiler: policies report to it.
var _ httppolicy.Compiler = (*compiler)(nil)

// Fail reports a problem at p in the file; path is its YAML path.
func (c *compiler) Fail(p config.Pos, path string, err error) {
	if p.Line > 0 {
		c.errs = append(c.errs, fmt.Errorf("%s:%d:%d: %s: %w", c.file, p.Line, p.Column, path, err))
	} else {
		c.errs = append(c.errs, fmt.Errorf("%s: %s: %w", c.file, path, err))
	}
}

// Rel resolves a relative path in the config against the config file's
// directory, so the gateway finds its files wherever it is started from;
// if nothing is there, the path is used as given (relative to the working
// directory, as agentgateway reads it).
func (c *compiler) Rel(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if j := filepath.Join(c.dir, p); fileExists(j) || !fileExists(p) {
		return j
	}
	return p
}

// noteReads notes what the snapshot's requests must carry for an
// expression of src; a mention anywhere counts (a false one costs a
// little time, never a wrong value).
func (c *compiler) noteReads(src string) {
	c.rawToken = c.rawToken || strings.Contains(src, "rawToken")
	c.readsRequest = c.readsRequest || strings.Contains(src, "request")
}

// Expression compiles one CEL value; its error names file, line and path.
func (c *compiler) Expression(phase cel.Phase, p config.Pos, path, src string) *cel.Expression {
	c.noteReads(src)
	x, err := cel.Compile(phase, fmt.Sprintf("%s:%d: %s", c.file, p.Line, path), src)
	if err != nil {
		c.errs = append(c.errs, err)
	}
	return x
}

// HTTPClient is for JWKS URLs and extAuthz.
func (c *compiler) HTTPClient() *http.Client { return c.deps.client }

// JWKSRefetchInterval is jwksRefetchInterval.
func (c *compiler) Own(o io.Closer) { c.owned = append(c.owned, o) }

func (c *compiler) JWKSRefetchInterval() time.Duration { return jwksRefetchInterval }

// Spiffe is the gateway's SPIFFE identity. Validate has none: its configs
// would refuse every handshake, which is fine as they never serve.
func (c *compiler) Spiffe() *spiffe.Workload {
	if c.deps.spiffe == nil {
		return &spiffe.Workload{}
	}
	return c.deps.spiffe
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// compile builds a snapshot from a decoded file. It does not touch the
// network except to read JWKS/TLS files; JWKS URLs are fetched on first use.
func compile(name string, data []byte, f *config.File, deps compileDeps) (*snapshot, error) {
	c := &compiler{file: name, dir: filepath.Dir(name), deps: deps, backends: map[string]Backend{}}
	s := &snapshot{file: f, source: data, hash: sha256.Sum256(data), loadedAt: time.Now(), binds: map[int]*bindTable{}}
	if f.Config != nil && f.Config.Logging != nil {
		s.logFormat = f.Config.Logging.Format
	}
	if f.Config != nil && f.Config.MCP != nil {
		c.mcpSessionTTL = f.Config.MCP.SessionTTL.D
	}
	if fp := f.FrontendPolicies; fp != nil && fp.NetworkAuthorization != nil {
		s.network = c.Rules(cel.Network, fp.NetworkAuthorization, "frontendPolicies.networkAuthorization")
	}
	if fp := f.FrontendPolicies; fp != nil && fp.AccessLog != nil {
		s.accessLog = c.accessLog(fp.AccessLog)
	}
	if fp := f.FrontendPolicies; fp != nil && fp.HTTP != nil {
		s.http = *fp.HTTP
	}
	s.tracing = c.tracing(f)
	if fp := f.FrontendPolicies; fp != nil && fp.AccessLog != nil && fp.AccessLog.OTLP != nil {
		s.accessLogOTLP = c.accessLogOTLP(fp.AccessLog, s.accessLog, s.tracing)
	}
	for bi, b := range f.Binds {
		bp := b.PathAt(bi)
		bt := &bindTable{port: b.Port, tailnet: b.Tailnet, connect: b.TunnelProtocol == "connect", internal: b.Mode == "internal"}
		c.bindPort = b.Port
		c.bindOptions(b, bt, bp)
		for li, l := range b.Listeners {
			lp := l.PathAt(bp, li)
			lt := c.listener(l, lp, bi, li)
			if l.Protocol == "HTTPS" {
				bt.https = true
			}
			bt.listeners = append(bt.listeners, lt)
		}
		// Most specific listener hostname first: exact, then wildcard, then any.
		sort.SliceStable(bt.listeners, func(i, j int) bool {
			return hostRank(bt.listeners[i].hostname) > hostRank(bt.listeners[j].hostname)
		})
		s.binds[b.Port] = bt
	}
	s.egress = compileEgress(f)
	s.mcp, s.owned, s.rawToken, s.readsRequest = c.mcp, c.owned, c.rawToken, c.readsRequest
	if len(c.errs) > 0 {
		s.close()
		return nil, errors.Join(distinct(c.errs)...)
	}
	s.warnings = c.warns
	s.markFastFront()
	if deps.log != nil {
		for _, w := range c.warns {
			deps.log.Warn("config warning", "file", name, "warning", w)
		}
	}
	return s, nil
}

// distinct drops errors already in errs with the same text: a
// top-level route attached to several listeners is compiled once per
// listener, and its mistakes are to be told once.
func distinct(errs []error) []error {
	seen := map[string]bool{}
	var out []error
	for _, err := range errs {
		if !seen[err.Error()] {
			seen[err.Error()] = true
			out = append(out, err)
		}
	}
	return out
}

func hostRank(h string) int {
	switch {
	case h == "":
		return 0
	case strings.HasPrefix(h, "*"):
		return 1
	}
	return 2
}

// Rules compiles a rule set in phase; its warnings are kept for the
// snapshot.
func (c *compiler) Rules(phase cel.Phase, rs *config.RuleSet, path string) *cel.Set {
	var specs []cel.Spec
	for i, r := range rs.Rules {
		c.noteReads(r.Expr)
		specs = append(specs, cel.Spec{
			Kind:  cel.Kind(r.Kind),
			Expr:  r.Expr,
			Where: fmt.Sprintf("%s:%d: %s.rules[%d]", c.file, r.Pos.Line, path, i),
		})
	}
	set, err := cel.CompileSet(phase, specs)
	if err != nil {
		c.errs = append(c.errs, err)
		return nil
	}
	c.warns = append(c.warns, set.Warnings()...)
	return set
}

func (c *compiler) listener(l config.Listener, path string, bi, li int) *listenerTable {
	name := l.Name
	if name == "" {
		name = fmt.Sprintf("bind%d-listener%d", bi, li)
	}
	lt := &listenerTable{name: name, path: path, hostname: strings.ToLower(l.Hostname)}
	if l.TLS != nil && l.TLS.Spiffe != nil {
		lt.spiffeTLS = c.Spiffe().ServerTLS([]string{"http/1.1"})
	} else if l.TLS != nil && l.TLS.Mode == "dynamicCa" {
		m, err := newLeafMinter(c.Rel(l.TLS.Cert), c.Rel(l.TLS.Key))
		if err != nil {
			c.Fail(l.TLS.Pos, path+".tls", err)
		}
		lt.minter = m
	} else if l.TLS != nil {
		cert, err := tls.LoadX509KeyPair(c.Rel(l.TLS.Cert), c.Rel(l.TLS.Key))
		if err != nil {
			c.Fail(l.TLS.Pos, path+".tls", fmt.Errorf("load certificate: %w", err))
		} else {
			lt.cert = &cert
		}
	}
	pp := path + ".policies"
	if l.YAMLPath != "" {
		pp = l.YAMLPath // a gateways: listener, its policies written inline
	}
	if p := l.Policies; p != nil {
		lt.policies = httppolicy.Compile(&config.RoutePolicies{GatewayPolicies: *p}, pp, c)
	}
	for ri, r := range l.Routes {
		rp := r.PathAt(path, ri)
		rt := c.route(r, rp, name, ri)
		matches := r.Matches
		if len(matches) == 0 {
			prefix := "/"
			matches = []config.Match{{Path: &config.PathMatch{Prefix: &prefix}}}
		}
		for mi, m := range matches {
			mt, ok := c.matcher(m, fmt.Sprintf("%s.matches[%d]", rp, mi))
			if ok {
				mt.configIdx = len(lt.routes)
				lt.routes = append(lt.routes, routeEntry{route: rt, m: mt})
			}
		}
	}
	sort.SliceStable(lt.routes, func(i, j int) bool { return moreSpecific(lt.routes[i].m, lt.routes[j].m) })
	return lt
}

// moreSpecific orders matches as the Gateway API does: exact path, then
// the longest prefix or regex (a prefix wins a tie); then a method; then
// more header matches; then more query matches; then config order.
func moreSpecific(a, b matcher) bool {
	if (a.pathKind == 3) != (b.pathKind == 3) {
		return a.pathKind == 3
	}
	if len(a.path) != len(b.path) {
		return len(a.path) > len(b.path)
	}
	if a.pathKind != b.pathKind {
		return a.pathKind > b.pathKind
	}
	if (a.method != "") != (b.method != "") {
		return a.method != ""
	}
	if len(a.headers) != len(b.headers) {
		return len(a.headers) > len(b.headers)
	}
	if len(a.query) != len(b.query) {
		return len(a.query) > len(b.query)
	}
	return a.configIdx < b.configIdx
}

func (c *compiler) matcher(m config.Match, path string) (matcher, bool) {
	ok := true
	mt := matcher{method: m.Method, pathKind: 2, path: "/"}
	if p := m.Path; p != nil {
		switch {
		case p.Exact != nil:
			mt.pathKind, mt.path = 3, *p.Exact
		case p.Prefix != nil:
			mt.pathKind, mt.path = 2, *p.Prefix
		case p.Regex != nil:
			re, err := regexp.Compile("^(?:" + *p.Regex + ")$")
			if err != nil {
				c.Fail(p.Pos, path+".path.regex", fmt.Errorf("invalid regular expression: %w", err))
				ok = false
			}
			mt.pathKind, mt.path, mt.pathRe = 1, *p.Regex, re
		}
	}
	vm := func(list []config.ValueMatch, what string) []valueMatcher {
		var out []valueMatcher
		for i, v := range list {
			x := valueMatcher{name: v.Name, exact: v.Value.Exact}
			if what == "headers" {
				x.name = http.CanonicalHeaderKey(v.Name)
			}
			if v.Value.Regex != nil {
				re, err := regexp.Compile("^(?:" + *v.Value.Regex + ")$")
				if err != nil {
					c.Fail(v.Value.Pos, fmt.Sprintf("%s.%s[%d].value.regex", path, what, i), fmt.Errorf("invalid regular expression: %w", err))
					ok = false
					continue
				}
				x.re = re
			}
			out = append(out, x)
		}
		return out
	}
	mt.headers = vm(m.Headers, "headers")
	mt.query = vm(m.Query, "query")
	return mt, ok
}

func (c *compiler) route(r config.Route, path, listener string, ri int) *routeTable {
	if r.YAMLPath != "" {
		path = r.YAMLPath // the top-level mcp: block
	}
	name := r.Name
	if name == "" {
		name = fmt.Sprintf("route%d", ri)
	}
	rt := &routeTable{name: name, key: listener + "/" + name, path: path, paths: pathOptions(r)}
	for _, h := range r.Hostnames {
		rt.hostnames = append(rt.hostnames, strings.ToLower(h))
	}
	if p := r.Policies; p != nil {
		rt.policies = httppolicy.Compile(p, path+".policies", c)
		rt.requestTimeout, rt.backendTimeout = rt.policies.RequestTimeout, rt.policies.BackendTimeout
		rt.a2a = rt.policies.A2A
	}
	for bi, b := range r.Backends {
		bp := fmt.Sprintf("%s.backends[%d]", path, bi)
		if b.YAMLPath != "" {
			bp = b.YAMLPath // a named backend
		}
		w := 1
		if b.Weight != nil {
			w = *b.Weight
		}
		var be Backend
		var err error
		// A backend's own policies replace the route's of the same key
		// for requests sent to it (Overlay).
		pol := rt.policies
		if b.Policies != nil {
			pol = httppolicy.Overlay(rt.policies, httppolicy.Compile(b.Policies.AsRoutePolicies(), bp+".policies", c))
		}
		if b.MCP != nil {
			mp := bp + ".mcp"
			if r.YAMLPath == config.SimpleMCPPath {
				mp = config.SimpleMCPPath
			}
			be, err = c.mcpBackend(b.MCP, r.Policies, mp, rt.key)
		} else if b.Dynamic != nil {
			be = c.dynamicBackend(pol)
		} else {
			be, err = c.hostBackend(b.Host, pol)
		}
		if errors.Is(err, errReported) {
			continue
		}
		if err != nil {
			c.Fail(b.Pos, bp+".host", err)
			continue
		}
		if w > 0 {
			wb := weightedBackend{Backend: be, weight: w}
			if pol != rt.policies {
				wb.policies = pol
			}
			rt.backends = append(rt.backends, wb)
			rt.totalWeight += w
		}
	}
	if len(r.Backends) > 0 && rt.totalWeight == 0 && len(c.errs) == 0 {
		c.Fail(r.Pos, path+".backends", errors.New("every backend has weight 0"))
	}
	return rt
}

// mcpBackend builds an MCP backend; the route's mcpAuthorization rules
// are compiled in the MCP phase (a rule on response.* is a load error).
// mcpCallerLog is what an MCP access log line says of the caller, as
// the mcp package reads it from the request's CEL variables
// (source.address, source.tailscale.node, jwt.sub), without building
// them: a tools/call on a route without mcpAuthorization needs no more.
func mcpCallerLog(ri *requestInfo) []any {
	rv := ri.vars
	if rv == nil {
		return nil
	}
	var out []any
	if rv.ci != nil {
		if a, ok := rv.ci.source["address"]; ok {
			out = append(out, "src", a)
		}
		if ts, ok := rv.ci.source["tailscale"].(map[string]any); ok {
			out = append(out, "tailscale.node", ts["node"])
		}
	}
	if sub, ok := rv.jwt["sub"]; ok {
		out = append(out, "jwt.sub", sub)
	}
	return out
}

func (c *compiler) mcpBackend(m *config.MCPBackend, pol *config.RoutePolicies, path, route string) (Backend, error) {
	opts := mcp.Options{
		Name:       "mcp:" + route,
		PrefixMode: mcp.PrefixMode(m.PrefixMode),
		FailOpen:   m.FailureMode == "failOpen",
		Stateless:  m.StatefulMode == "stateless",
		Metrics:    c.deps.mcpMetrics,
		Sessions:   c.deps.mcpSessions,
		Log:        c.deps.log,
		AccessLog:  c.deps.accessLog,
		HTTPClient: &http.Client{Transport: c.deps.transport},
		Vars: func(r *http.Request) cel.Vars {
			if ri := infoFrom(r.Context()); ri != nil && ri.vars != nil {
				return ri.vars.get()
			}
			return nil
		},
		CallerLog: func(r *http.Request) []any {
			ri := infoFrom(r.Context())
			if ri == nil {
				return nil
			}
			return mcpCallerLog(ri)
		},
		Principal: func(r *http.Request) string {
			ri := infoFrom(r.Context())
			if ri == nil {
				return r.RemoteAddr
			}
			p := ri.caller.Address.Addr().String()
			if ri.caller.Tailscale != nil {
				p = "node:" + ri.caller.Tailscale.Node
			}
			if sub, ok := ri.caller.Claims["sub"].(string); ok {
				p += "|sub:" + sub
			}
			return p
		},
	}
	opts.SessionIdleTTL = c.mcpSessionTTL
	if pol != nil && pol.MCPAuthorization != nil {
		pp := path
		if i := strings.LastIndex(path, ".backends["); i >= 0 {
			pp = path[:i]
		}
		opts.Authorization = c.Rules(cel.MCP, pol.MCPAuthorization, pp+".policies.mcpAuthorization")
	}
	reported := len(c.errs)
	for i, t := range m.Targets {
		tp := fmt.Sprintf("%s.targets[%d]", path, i)
		mt := mcp.Target{Name: t.Name}
		switch {
		case t.Stdio != nil:
			mt.Stdio = &mcp.Stdio{Cmd: t.Stdio.Cmd, Args: t.Stdio.Args, Env: t.Stdio.Env, Dir: c.dir,
				PerSession: t.Stdio.Reuse != nil && !*t.Stdio.Reuse}
		case t.MCP != nil:
			if mt.HTTP = c.targetURL(t.MCP, "/mcp", tp+".mcp"); mt.HTTP == "" {
				continue
			}
		case t.SSE != nil:
			if mt.SSE = c.targetURL(t.SSE, "/sse", tp+".sse"); mt.SSE == "" {
				continue
			}
		case t.OpenAPI != nil:
			if mt.OpenAPI = c.openAPITarget(t.Name, t.OpenAPI, tp+".openapi"); mt.OpenAPI == nil {
				continue
			}
		}
		opts.Targets = append(opts.Targets, mt)
	}
	if len(c.errs) > reported {
		return nil, errReported // a target's problem is the one to fix
	}
	b, err := mcp.New(opts)
	if err != nil {
		return nil, err
	}
	c.mcp = append(c.mcp, b)
	return b, nil
}

// errReported is returned by a builder that has already reported its
// problems to the compiler.
var errReported = errors.New("reported")

// targetURL is remoteURL for an mcp or sse target at YAML path; a bad
// host is reported at the target and the result is "".
func (c *compiler) targetURL(r *config.MCPRemote, defPath, path string) string {
	u, err := remoteURL(r, defPath)
	if err != nil {
		c.Fail(r.Pos, path, err)
	}
	return u
}

// remoteURL turns an mcp/sse target's host (a URL or host:port) and
// optional port and path into a URL; a bare host:port gets defPath.
func remoteURL(r *config.MCPRemote, defPath string) (string, error) {
	raw := r.Host
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("invalid host %q: want a URL like http://127.0.0.1:9000/mcp or host:port", r.Host)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("invalid host %q: scheme must be http or https", r.Host)
	}
	if r.Port != 0 {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(r.Port))
	}
	if r.Path != "" {
		u.Path = r.Path
	} else if u.Path == "" {
		u.Path = defPath
	}
	return u.String(), nil
}
