package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/httppolicy"
	"github.com/tailgate-dev/tailgate/internal/gateway/spiffe"
	"github.com/tailgate-dev/tailgate/internal/slogtext"
)

// Caller is what the gateway knows about who sent a request. Backends
// read it with CallerFrom.
type Caller struct {
	// Address is the TCP peer.
	Address netip.AddrPort
	// Tailscale is set on tailnet binds when WhoIs answered.
	Tailscale *TailscaleIdentity
	// Claims are the verified JWT's claims, nil without one. They may be
	// shared with other requests that carried the same token: read only.
	Claims map[string]any
	// ExtAuthz is the metadata the authorization service returned.
	ExtAuthz map[string]any
}

type ctxKey int

const (
	connKey ctxKey = iota
	requestKey
)

// CallerFrom returns the caller of the request whose context this is.
func CallerFrom(ctx context.Context) (Caller, bool) {
	ri := infoFrom(ctx)
	if ri == nil {
		return Caller{}, false
	}
	return ri.caller, true
}

// connInfo is decided once per connection.
type connInfo struct {
	port int
	src  netip.AddrPort
	// srcText and addrText are src and its address as text, written
	// once a connection rather than once a request (access log,
	// X-Forwarded-For).
	srcText, addrText string
	ident             *TailscaleIdentity
	source            map[string]any // CEL source.* (immutable, shared by requests)
}

// requestInfo travels with a request for the access log and backends.
type requestInfo struct {
	caller      Caller
	srcText     string // caller.Address as text, "" if not known yet
	listener    string
	route       string
	backend     string
	denyPolicy  string
	denyReason  string
	upstreamErr error
	body        *bodyGuard   // nil for a request without a body
	vars        *requestVars // CEL variables, for backends with rules (MCP)
	// prefix is the pathPrefix of the match that chose the route ("" for
	// exact and regex matches); backendHost asks the backend to send its
	// own host:port as Host (urlRewrite authority: auto).
	prefix      string
	backendHost bool
	// bearer is the token the caller authenticated with.
	bearer string
	// pathMatch is the chosen match's path as a span name shows it
	// ("/mcp/*", "/exact"); trace is the request's span, nil when the
	// request is not traced.
	pathMatch string
	trace     *requestTrace
	// a2a is set on A2A routes (a2a.go).
	a2a *a2aCall
}

func infoFrom(ctx context.Context) *requestInfo {
	ri, _ := ctx.Value(requestKey).(*requestInfo)
	return ri
}

// gatedListener wraps a bind's listener: every connection is authorized
// (networkAuthorization) before its first byte is read, and TLS is
// terminated when the bind's listeners are HTTPS.
type gatedListener struct {
	net.Listener
	g  *Gateway
	bs *bindServer
}

func (l *gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ac := &authConn{Conn: c, g: l.g, bs: l.bs}
	if bt := l.g.snap.Load().binds[l.bs.port]; bt != nil && bt.https {
		ac.tls = tls.Server(ac, l.g.tlsConfig(l.bs.port))
		return ac.tls, nil
	}
	return ac, nil
}

// authConn runs networkAuthorization on first Read, in the connection's
// own goroutine (so a slow WhoIs never stalls Accept). A denied
// connection is closed before any TLS or HTTP byte is parsed.
type authConn struct {
	net.Conn
	g      *Gateway
	bs     *bindServer
	once   sync.Once
	denied bool
	info   *connInfo
	// remote is the fast front's RemoteAddr for the connection's
	// requests, made on first use (they are served one at a time).
	remote string
	// tls is the TLS connection over this one on an HTTPS bind; state
	// its ConnectionState once the handshake is done (tlsState).
	tls   *tls.Conn
	state atomic.Pointer[tls.ConnectionState]
}

// tlsState is what net/http puts in r.TLS for the connection's requests:
// its TLS state once the handshake is done, nil on a plain connection.
// net/http sets r.TLS only on a connection it takes as a *tls.Conn; the
// fast front's requests, and net/http's on a connection the fast front
// handed off (a replaying wrapper over the *tls.Conn), get it from here.
func (c *authConn) tlsState() *tls.ConnectionState {
	if c.tls == nil {
		return nil
	}
	if st := c.state.Load(); st != nil {
		return st
	}
	st := c.tls.ConnectionState()
	if !st.HandshakeComplete {
		return nil
	}
	c.state.Store(&st) // a racing call stores the same state
	return &st
}

// src is the caller's address and port as the access log shows them.
func (ri *requestInfo) src() string {
	if ri.srcText != "" {
		return ri.srcText
	}
	return ri.caller.Address.String()
}

func (c *authConn) remoteAddr() string {
	if c.remote == "" {
		c.remote = c.RemoteAddr().String()
	}
	return c.remote
}

func (c *authConn) Read(b []byte) (int, error) {
	c.once.Do(c.authorize)
	if c.denied {
		return 0, io.EOF
	}
	return c.Conn.Read(b)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (c *authConn) authorize() {
	src := addrPortOf(c.RemoteAddr())
	ci := &connInfo{port: c.bs.port, src: src, srcText: src.String(), addrText: src.Addr().String()}
	source := map[string]any{
		"address": ci.addrText, "port": int64(src.Port()),
		"rawAddress": ci.addrText, "rawPort": int64(src.Port()),
	}
	if c.bs.tailnet {
		c.g.mu.Lock()
		tn := c.g.tailnet
		c.g.mu.Unlock()
		if tn != nil {
			id, err := tn.whois(context.Background(), src)
			if err != nil {
				c.g.log.Warn("tailnet caller unknown", "src", src.String(), "error", err)
			} else {
				ci.ident = id
				source["tailscale"] = id.vars()
			}
		}
	}
	ci.source = source
	c.info = ci
	s := c.g.snap.Load()
	if s.network == nil {
		return
	}
	v := s.network.Decide(cel.Vars{"source": source})
	if v.Allowed {
		return
	}
	c.denied = true
	c.g.metrics.denial("networkAuthorization", v.Reason)
	attrs := []any{"bind", fmt.Sprintf("bind/%d", c.bs.port), "src", src.String(), "policy", "networkAuthorization", "reason", v.Reason}
	attrs = append(attrs, identityAttrs(ci.ident)...)
	c.g.access.Load().Info("connection denied", attrs...)
	c.Conn.Close()
}

func (g *Gateway) tlsConfig(port int) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		// A tls.spiffe listener has a config of its own: it asks for
		// client certificates and verifies them.
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			bt := g.snap.Load().binds[port]
			if bt == nil {
				return nil, errors.New("bind no longer configured")
			}
			lt := bt.pickListener(hi.ServerName)
			if lt == nil && len(bt.listeners) > 0 {
				lt = bt.listeners[0]
			}
			if lt != nil && lt.spiffeTLS != nil {
				return lt.spiffeTLS, nil
			}
			return nil, nil
		},
		GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
			bt := g.snap.Load().binds[port]
			if bt == nil {
				return nil, errors.New("bind no longer configured")
			}
			if lt := bt.pickListener(hi.ServerName); lt != nil && lt.minter != nil {
				return lt.minter.certFor(hi.ServerName)
			} else if lt != nil && lt.cert != nil {
				return lt.cert, nil
			}
			for _, lt := range bt.listeners {
				if lt.minter != nil {
					return lt.minter.certFor(hi.ServerName)
				}
				if lt.cert != nil {
					return lt.cert, nil
				}
			}
			return nil, errors.New("no certificate")
		},
	}
}

func hostMatches(pattern, host string) bool {
	if pattern == "" {
		return true
	}
	if strings.HasPrefix(pattern, "*.") {
		return strings.HasSuffix(host, pattern[1:]) && len(host) > len(pattern)-1
	}
	return pattern == host
}

func (bt *bindTable) pickListener(host string) *listenerTable {
	for _, lt := range bt.listeners {
		if hostMatches(lt.hostname, host) {
			return lt
		}
	}
	return nil
}

// pickRoute is the most specific route matching r, whose path routes
// choose by is path (normalized and decoded, see routeRequest).
func (lt *listenerTable) pickRoute(r *http.Request, host, path string) *routeTable {
	e := lt.pickEntry(r, host, path)
	if e == nil {
		return nil
	}
	return e.route
}

// pickEntry is the most specific route match for r (pickRoute).
func (lt *listenerTable) pickEntry(r *http.Request, host, path string) *routeEntry {
	for i := range lt.routes {
		e := &lt.routes[i]
		if len(e.route.hostnames) > 0 {
			ok := false
			for _, h := range e.route.hostnames {
				if hostMatches(h, host) {
					ok = true
					break
				}
			}
			if !ok {
				continue
			}
		}
		if e.m.matches(r, path) {
			return e
		}
	}
	return nil
}

func (m *matcher) matches(r *http.Request, p string) bool {
	switch m.pathKind {
	case 3:
		// An exact path also matches with one trailing slash: most
		// backends serve /x/ as /x, so the exact route's policies must
		// apply to both (agentgateway matches /x only).
		if p != m.path && (p != m.path+"/" || strings.HasSuffix(m.path, "/")) {
			return false
		}
	case 2:
		// Prefixes match whole path segments: /api matches /api and /api/x,
		// not /apix (Gateway API semantics).
		if !strings.HasPrefix(p, m.path) || (len(p) > len(m.path) && !strings.HasSuffix(m.path, "/") && p[len(m.path)] != '/') {
			return false
		}
	case 1:
		if !m.pathRe.MatchString(p) {
			return false
		}
	}
	if m.method != "" && r.Method != m.method {
		return false
	}
	for _, h := range m.headers {
		vs := r.Header.Values(h.name)
		if !h.matches(strings.Join(vs, ","), len(vs) > 0) {
			return false
		}
	}
	if len(m.query) > 0 {
		q := r.URL.Query()
		for _, qm := range m.query {
			vs, ok := q[qm.name]
			v := ""
			if ok && len(vs) > 0 {
				v = vs[0]
			}
			if !qm.matches(v, ok) {
				return false
			}
		}
	}
	return true
}

func (g *Gateway) serve(bs *bindServer) {
	if !g.opts.NoFastFront && !bs.internal {
		g.serveFast(bs)
		return
	}
	gl := &gatedListener{Listener: bs.ln, g: g, bs: bs}
	bs.srv = g.httpServer(bs)
	g.servers[bs.port] = bs
	go bs.srv.Serve(gl)
}

// httpServer is the bind's net/http server.
func (g *Gateway) httpServer(bs *bindServer) *http.Server {
	srv := &http.Server{
		Handler:           g.handler(bs),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ac := authConnOf(c); ac != nil {
				return context.WithValue(ctx, connKey, ac)
			}
			return ctx
		},
	}
	if d := g.snap.Load().http.HTTP1IdleTimeout.D; d > 0 {
		srv.IdleTimeout = d // frontendPolicies.http, at bind start
	}
	return srv
}

// statusWriter records the status and size for logs and metrics and
// keeps Flush working for streaming backends.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	// after are the response header changes policies asked for, applied
	// in order when the headers are written.
	after []*httppolicy.HeaderModifier
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		for _, m := range w.after {
			m.Apply(w.Header(), nil)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func requestHost(r *http.Request) string {
	h := r.Host
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func (g *Gateway) handler(bs *bindServer) http.Handler {
	bind := fmt.Sprintf("bind/%d", bs.port)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ac, _ := r.Context().Value(connKey).(*authConn)
		if r.TLS == nil && ac != nil {
			r.TLS = ac.tlsState() // a TLS connection the fast front handed off
		}
		g.serveRequest(bs, bind, g.snap.Load(), ac, w, r, nil)
	})
}

// serveRequest is the gateway's request path on both fronts: net/http's
// (fast nil) and the fast front's (fastfront.go), which sends to plain-HTTP
// backends itself.
//
// ac is the request's connection (nil for one not accepted by a bind).
func (g *Gateway) serveRequest(bs *bindServer, bind string, s *snapshot, ac *authConn, w http.ResponseWriter, r *http.Request, fast *fastCall) {
	start := time.Now()
	// One allocation for what the gateway keeps per request.
	st := &requestState{}
	ri := &st.ri
	var ci *connInfo
	if ac != nil && ac.info != nil {
		ci = ac.info
		ri.caller.Address, ri.caller.Tailscale = ci.src, ci.ident
		ri.srcText = ci.srcText
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		ri.bearer = strings.TrimSpace(h[7:])
	}
	sw := &st.sw
	sw.ResponseWriter = w
	ri.trace = s.tracing.begin(r, ci, start)
	r = r.WithContext(context.WithValue(r.Context(), requestKey, ri))
	defer func() {
		if st.finishLater {
			return // the fast front finishes when the body is sent
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		g.finish(bind, r, sw, ri, start)
	}()
	bt := s.binds[bs.port]
	if bt == nil {
		ri.denyReason = "bind removed"
		http.Error(sw, "bind is shutting down", http.StatusServiceUnavailable)
		return
	}
	if bt.connect {
		g.serveConnect(sw, r, ri, s, &bs.tunnels)
		return
	}
	// Before any policy reads a header: hop-by-hop headers the client
	// named go, and forwarding headers follow the bind's trust policy.
	stripConnectionHeaders(r.Header)
	var addrText string
	if ci != nil {
		addrText = ci.addrText
	}
	setForwarding(r, ri.caller.Address.Addr(), addrText, bt.trusted)
	ri.body = guardBody(w, r, bt.bodyTimeout)
	host := requestHost(r)
	lt := bt.pickListener(host)
	if lt == nil {
		ri.denyReason = "no listener for host"
		http.Error(sw, "no listener for this host", http.StatusNotFound)
		return
	}
	ri.listener = lt.name
	rt, r2 := g.routeRequest(sw, r, ri, lt, host)
	if r = r2; rt == nil {
		return
	}
	ri.route = rt.key
	if rt.a2a {
		ri.a2a = &a2aCall{publicPath: r.URL.EscapedPath()}
	}
	timeout := rt.requestTimeout
	if timeout > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	st.rv = requestVars{r: r, ci: ci, host: host, lateRequest: !s.readsRequest}
	ri.vars = &st.rv
	// The backend is picked first: its own policies (backendAuth,
	// backendTLS...) replace the route's of the same key.
	var be Backend
	pol := rt.policies
	if len(rt.backends) > 0 {
		wb := rt.pick()
		be = wb.Backend
		if wb.policies != nil {
			pol = wb.policies
		}
	}
	if !lt.policies.Empty() || !pol.Empty() {
		x := &st.x
		*x = exchange{g: g, ri: ri, sw: sw, rawToken: s.rawToken}
		if !lt.policies.Run(sw, r, x) || !pol.Run(sw, r, x) {
			return
		}
	}
	if be == nil {
		http.Error(sw, "route has no backend", http.StatusServiceUnavailable)
		return
	}
	ri.backend = be.Name()
	if rt.backendTimeout > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), rt.backendTimeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	if fast != nil {
		fast.readOnly = onlyReads(lt.policies) && onlyReads(pol)
		if fast.send(g, st, r, be, bind, start) {
			return
		}
	}
	be.ServeHTTP(sw, r)
}

func (rt *routeTable) pick() weightedBackend {
	if len(rt.backends) == 1 {
		return rt.backends[0]
	}
	n := rand.IntN(rt.totalWeight)
	for _, b := range rt.backends {
		if n < b.weight {
			return b
		}
		n -= b.weight
	}
	return rt.backends[0]
}

// requestState is what the gateway keeps per request, allocated once.
type requestState struct {
	ri requestInfo
	sw statusWriter
	x  exchange
	rv requestVars
	// finishLater: the fast front streams the response after the
	// handler returns and writes the access log then.
	finishLater bool
}

// requestVars builds CEL variables for a request once, on first use:
// most requests on a route without rules never need them.
type requestVars struct {
	r      *http.Request
	ci     *connInfo
	host   string
	vars   cel.Vars
	jwt    map[string]any // nil until a policy authenticates the caller
	extMD  map[string]any // nil until extAuthz returns metadata
	cached bool
	// jwtShared: jwt is a verified token's cached claims, shared with
	// other requests, so it is copied before anything is merged into it.
	jwtShared bool
	// req is request.*, taken with the other variables, unless
	// lateRequest: no expression of the config reads request, so it is
	// taken only if something else asks for it (get).
	req         *requestSnapshot
	lateRequest bool
}

// requestSnapshot is request.* as it was when the request's variables
// were first asked for: policies that run later may rewrite the request,
// and what rules see stays what it was then. Taking it copies strings,
// and the header map's entries (Set, Add and Del on the request's
// headers replace its slices, they do not write into them); the map CEL
// reads, with the flattened headers, is built only when an expression
// reads request (cel.Lazy). Most rules read only jwt.* or source.*, and
// building it was most of what such a rule cost.
type requestSnapshot struct {
	// rawHost is r.Host (request.uri's), host the normalized one.
	method, rawHost, host, scheme, path, pathAndQuery, proto string
	// The headers: in few (the first nfew) when there are not more, so
	// that taking them allocates nothing, else a shallow copy in many.
	few   [8]headerField
	nfew  int
	many  http.Header
	built map[string]any
}

type headerField struct {
	name   string
	values []string
}

func takeRequest(r *http.Request, host string) *requestSnapshot {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	requestURI := r.URL.RequestURI()
	s := &requestSnapshot{method: r.Method, rawHost: r.Host, host: host, scheme: scheme,
		path: r.URL.Path, pathAndQuery: requestURI, proto: r.Proto}
	if len(r.Header) > len(s.few) {
		s.many = maps.Clone(r.Header)
		return s
	}
	for k, vs := range r.Header {
		s.few[s.nfew] = headerField{k, vs}
		s.nfew++
	}
	return s
}

// Resolve builds request.* once; the requestVars is the request's own,
// so this runs in its goroutine (get builds it before the variables
// leave it).
func (s *requestSnapshot) Resolve() any {
	if s.built == nil {
		var headers map[string]string
		if s.many != nil {
			headers = httppolicy.FlatHeaders(s.many)
		} else {
			headers = make(map[string]string, s.nfew)
		}
		for _, f := range s.few[:s.nfew] {
			k, v := httppolicy.FlatHeader(f.name, f.values)
			headers[k] = v
		}
		s.built = map[string]any{
			"method":       s.method,
			"uri":          s.scheme + "://" + s.rawHost + s.pathAndQuery,
			"host":         s.host,
			"scheme":       s.scheme,
			"path":         s.path,
			"pathAndQuery": s.pathAndQuery,
			"version":      s.proto,
			"headers":      headers,
		}
	}
	return s.built
}

// noVars is the value of jwt.* and extauthz.* before a policy sets them.
// CEL never writes to it; requestVars copies before merging.
var noVars = map[string]any{}

func newRequestVars(r *http.Request, ci *connInfo, host string) *requestVars {
	return &requestVars{r: r, ci: ci, host: host}
}

func orNoVars(m map[string]any) map[string]any {
	if m == nil {
		return noVars
	}
	return m
}

// get is the variables with every value a plain map, for callers that
// read them as maps or keep them past the request's goroutine (MCP, the
// access log).
func (rv *requestVars) get() cel.Vars {
	v := rv.lazy()
	v["request"] = rv.request().Resolve()
	return v
}

// request is request.*, taken now if it was not yet.
func (rv *requestVars) request() *requestSnapshot {
	if rv.req == nil {
		rv.req = takeRequest(rv.r, rv.host)
	}
	return rv.req
}

// lateRequestVar is request.* for expressions when it is taken late.
type lateRequestVar requestVars

func (l *lateRequestVar) Resolve() any { return (*requestVars)(l).request().Resolve() }

// lazy is the variables for policies' expressions: request.* is built
// only if one reads it (requestSnapshot).
func (rv *requestVars) lazy() cel.Vars {
	if rv.cached {
		rv.vars["jwt"], rv.vars["extauthz"] = orNoVars(rv.jwt), orNoVars(rv.extMD)
		return rv.vars
	}
	r := rv.r
	source := noVars
	if rv.ci != nil {
		source = rv.ci.source
	}
	if id := spiffe.PeerID(r.TLS); id != "" {
		// source.spiffeId: the client's verified SVID (tls.spiffe).
		source = maps.Clone(source)
		source["spiffeId"] = id
	}
	var request cel.Lazy = (*lateRequestVar)(rv)
	if !rv.lateRequest {
		request = rv.request()
	}
	rv.vars = cel.Vars{
		"source":   source,
		"request":  request,
		"jwt":      orNoVars(rv.jwt),
		"extauthz": orNoVars(rv.extMD),
	}
	rv.cached = true
	return rv.vars
}

// addClaims merges a verified token's claims into jwt.*. The first token's
// claims are used as they are (they are never written to); a second
// merges into a copy.
func (rv *requestVars) addClaims(claims map[string]any) map[string]any {
	switch {
	case rv.jwt == nil:
		rv.jwt, rv.jwtShared = claims, true
		return rv.jwt
	case rv.jwtShared:
		own := make(map[string]any, len(rv.jwt)+len(claims))
		for k, v := range rv.jwt {
			own[k] = v
		}
		rv.jwt, rv.jwtShared = own, false
	}
	for k, v := range claims {
		rv.jwt[k] = v
	}
	return rv.jwt
}

// exchange is a request as its policies see it (httppolicy.Exchange).
type exchange struct {
	g  *Gateway
	ri *requestInfo
	sw *statusWriter
	// rawToken: the config reads jwt.rawToken (snapshot.rawToken).
	rawToken bool
}

func (x *exchange) Vars() cel.Vars { return x.ri.vars.lazy() }

// Refuse is the single place a refusal becomes a metric and (through
// finish) an access-log line; httppolicy.Deny adds the response.
func (x *exchange) Refuse(policy, reason string) {
	x.ri.denyPolicy, x.ri.denyReason = policy, reason
	x.g.metrics.denial(policy, metricReason(reason))
}

func (x *exchange) Note(reason string) { x.ri.denyReason = reason }

func (x *exchange) Authenticated(claims map[string]any) {
	if x.rawToken && x.ri.bearer != "" {
		// jwt.rawToken (agentgateway): the validated bearer token, shown
		// as "<redacted>" unless an expression asks for .unredacted().
		// Claims may be shared with the verified-token cache: copy.
		own := make(map[string]any, len(claims)+1)
		for k, v := range claims {
			own[k] = v
		}
		own["rawToken"] = cel.Redacted(x.ri.bearer)
		claims = own
	}
	x.ri.caller.Claims = x.ri.vars.addClaims(claims)
}

func (x *exchange) Authorized(metadata map[string]any) {
	rv := x.ri.vars
	if rv.extMD == nil {
		rv.extMD = make(map[string]any, len(metadata))
	}
	for k, v := range metadata {
		rv.extMD[k] = v
	}
	x.ri.caller.ExtAuthz = rv.extMD
}

func (x *exchange) ModifyResponse(m *httppolicy.HeaderModifier) {
	x.sw.after = append(x.sw.after, m)
}

func (x *exchange) PathPrefix() string { return x.ri.prefix }

func (x *exchange) UseBackendHost() { x.ri.backendHost = true }

func (x *exchange) BearerToken() string {
	if x.ri.caller.Claims == nil {
		return "" // only a token a policy validated is passed on
	}
	return x.ri.bearer
}

// metricReason keeps label values bounded: details after ":" or "(" (an
// attacker's alg name, a rule's location) stay in the log only.
func metricReason(reason string) string {
	if i := strings.IndexAny(reason, ":("); i > 0 {
		return strings.TrimSpace(reason[:i])
	}
	return reason
}

func identityAttrs(id *TailscaleIdentity) []any {
	if id == nil {
		return nil
	}
	return []any{"tailscale.node", id.Node, "tailscale.user", id.User, "tailscale.tags", strings.Join(id.Tags, ",")}
}

func (g *Gateway) finish(bind string, r *http.Request, w *statusWriter, ri *requestInfo, start time.Time) {
	dur := time.Since(start)
	g.metrics.request(bind, ri.route, r.Method, w.status, dur)
	// Typed attributes: slog boxes nothing and converts nothing.
	attrs := make([]slog.Attr, 0, 24)
	attrs = append(attrs,
		slog.String("bind", bind), slog.String("listener", ri.listener), slog.String("route", ri.route),
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", w.status),
		slog.String("duration_ms", strconv.FormatFloat(float64(dur.Microseconds())/1000, 'f', 3, 64)),
		slog.String("src", ri.src()),
	)
	if id := ri.caller.Tailscale; id != nil {
		attrs = append(attrs, slog.String("tailscale.node", id.Node), slog.String("tailscale.user", id.User), slog.String("tailscale.tags", strings.Join(id.Tags, ",")))
	}
	if sub, ok := ri.caller.Claims["sub"].(string); ok {
		attrs = append(attrs, slog.String("jwt.sub", sub))
	}
	if ri.backend != "" {
		attrs = append(attrs, slog.String("backend", ri.backend))
	}
	if ri.denyPolicy != "" {
		attrs = append(attrs, slog.String("policy", ri.denyPolicy))
	}
	if ri.denyReason != "" {
		attrs = append(attrs, slog.String("reason", ri.denyReason))
	}
	if ri.upstreamErr != nil {
		attrs = append(attrs, slog.String("error", ri.upstreamErr.Error()))
	}
	attrs = ri.a2a.logAttrs(attrs)
	ri.trace.end(r, ri, w, bind, dur)
	var lv cel.Vars
	vars := func() cel.Vars {
		if lv == nil {
			lv = logVars(r, ri, w)
		}
		return lv
	}
	s := g.snap.Load()
	s.accessLogOTLP.emit(attrs, vars, ri.trace, start.Add(dur))
	attrs, ok := s.accessLog.shape(attrs, vars)
	if !ok {
		return
	}
	g.writeAccess(start.Add(dur), attrs)
}

// writeAccess writes a request's access-log line: in the text format,
// by slogtext (the same bytes as slog's handler, at a fraction of its
// cost), else through the handler itself.
func (g *Gateway) writeAccess(at time.Time, attrs []slog.Attr) {
	if g.accessText.Load() {
		bp := lineBuffers.Get().(*[]byte)
		line, ok := slogtext.Append((*bp)[:0], at, slog.LevelInfo, "request", attrs)
		if ok {
			g.accessOut.Write(line)
		}
		if cap(line) <= 16<<10 {
			*bp = line
			lineBuffers.Put(bp)
		}
		if ok {
			return
		}
	}
	// The handler directly, not Logger.LogAttrs: the logger would walk
	// the stack for a source position no access line shows.
	h := g.access.Load().Handler()
	if ctx := context.Background(); h.Enabled(ctx, slog.LevelInfo) {
		rec := slog.NewRecord(at, slog.LevelInfo, "request", 0)
		rec.AddAttrs(attrs...)
		h.Handle(ctx, rec)
	}
}

// lineBuffers hold access-log lines while they are written.
var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}
