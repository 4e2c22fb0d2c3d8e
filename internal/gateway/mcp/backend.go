package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
)

// PrefixMode is how target names prefix tool and prompt names.
type PrefixMode string

const (
	Conditional PrefixMode = "conditional"
	Always      PrefixMode = "always"
	Never       PrefixMode = "never"
)

// Separator joins a target name and a tool or prompt name ("everything_echo").
const Separator = "_"

// CodeDenied is the JSON-RPC error code of a call mcpAuthorization refused.
const CodeDenied = -32003

// Options configure a Backend.
type Options struct {
	// Name labels the backend in logs and metrics; default "mcp".
	Name       string
	Targets    []Target
	PrefixMode PrefixMode // default Conditional
	// FailOpen skips targets that fail (failureMode: failOpen); the
	// default fails the request (failClosed).
	FailOpen bool
	// Stateless serves without Mcp-Session-Id sessions.
	Stateless bool
	// Authorization is the route's mcpAuthorization (MCP phase); nil allows all.
	Authorization *cel.Set
	// Vars returns the caller's CEL variables (source, request, jwt,
	// extauthz) for an HTTP request; nil means none.
	Vars func(*http.Request) cel.Vars
	// CallerLog returns what the access log says of the caller of an
	// HTTP request (src, tailscale.node, jwt.sub), as callerAttrs reads
	// it from Vars, without building every CEL variable: the fast path
	// asks it when no mcpAuthorization rule needs Vars. nil means from
	// Vars.
	CallerLog func(*http.Request) []any
	// Principal names the caller for session binding: a session may only
	// be used by the caller that opened it. nil means the remote address
	// host.
	Principal func(*http.Request) string
	// Metrics may be shared by many backends; nil records nothing.
	Metrics *Metrics
	// Log receives operational messages; AccessLog one line per MCP call.
	Log       *slog.Logger
	AccessLog func() *slog.Logger
	// HTTPClient reaches mcp and sse targets; nil means a default client.
	HTTPClient *http.Client
	// MaxMessageBytes bounds one request body; default 4 MiB.
	MaxMessageBytes int64
	// SessionIdleTTL closes a client session that has had no request for
	// this long (config.mcp.sessionTtl); default DefaultSessionIdleTTL.
	SessionIdleTTL time.Duration
	// Sessions keeps client sessions across config reloads: a Backend
	// built with the same Sessions and Name as a running one takes over
	// its sessions (and its SSE event store) when the running one is
	// closed. nil: sessions end with the Backend.
	Sessions *SessionStore
}

// DefaultSessionIdleTTL is agentgateway's: an MCP session idle for 30
// minutes is closed, and with it its per-session target connections.
const DefaultSessionIdleTTL = 30 * time.Minute

// Backend serves one MCP endpoint federating its targets. It implements
// the gateway's Backend interface (Name and http.Handler).
//
// The client-facing half (the MCP server, its sessions and event store)
// lives in a frontend that a Backend built for the same route with the
// same SessionStore takes over on reload; the target-facing half
// (upstreams, processes) belongs to the Backend and ends with it.
type Backend struct {
	name       string
	opts       Options
	targets    []Target
	metrics    *Metrics
	log        *slog.Logger
	httpClient *http.Client
	front      *frontend

	// shared are the shared targets by name, fixed by New: read without mu.
	shared map[string]*upstream
	// closed is set (under mu) by Close; requests read it without mu.
	closed atomic.Bool

	mu       sync.Mutex
	sessions map[*sdk.ServerSession]*session // per-session targets
	// sessionUps indexes the upstreams in sessions for upstreamFor, which
	// every call of every session goes through, so it takes no lock.
	sessionUps sync.Map       // sessionTarget → *upstream
	owners     map[string]int // never mode: exposed name → target index
	resOwner   map[string]int // resource URI → target index (unprefixed modes)
	subs       map[string]int // shared targets: "target\x00uri" → sessions subscribed
	wg         sync.WaitGroup

	// progress maps the progress tokens the gateway sent to targets back
	// to the client's token, session and request.
	progress sync.Map // gateway token → *progressRoute

	// listings are the targets' latest tools/list answers (ToolListings).
	listings toolListings
}

// session is the per-MCP-session state of one Backend: its own
// connections to the targets that are not shared.
type session struct {
	ups map[string]*upstream
}

// sessionTarget is a client session's use of one target.
type sessionTarget struct {
	ss     *sdk.ServerSession
	target int
}

// callerHeader carries a per-request token from ServeHTTP to the MCP
// handlers (the SDK passes request headers through). A value sent by a
// client is always replaced.
const callerHeader = "X-Tailgate-Mcp-Caller"

// New builds a backend. Nothing is started until the first request.
func New(opts Options) (*Backend, error) {
	if len(opts.Targets) == 0 {
		return nil, errors.New("mcp backend: no targets")
	}
	if opts.Name == "" {
		opts.Name = "mcp"
	}
	if opts.PrefixMode == "" {
		opts.PrefixMode = Conditional
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 0}
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = 4 << 20
	}
	if opts.SessionIdleTTL == 0 {
		opts.SessionIdleTTL = DefaultSessionIdleTTL
	}
	seen := map[string]bool{}
	for _, t := range opts.Targets {
		if seen[t.Name] {
			return nil, fmt.Errorf("mcp backend: target name %q is used twice", t.Name)
		}
		seen[t.Name] = true
	}
	b := &Backend{
		name: opts.Name, opts: opts, targets: opts.Targets, metrics: opts.Metrics, log: opts.Log,
		httpClient: opts.HTTPClient,
		shared:     map[string]*upstream{},
		sessions:   map[*sdk.ServerSession]*session{},
		owners:     map[string]int{},
		resOwner:   map[string]int{},
		subs:       map[string]int{},
	}
	for _, t := range opts.Targets {
		if !b.perSession(t) {
			b.shared[t.Name] = newUpstream(b, t, nil)
		}
	}
	b.front = opts.Sessions.attach(b)
	return b, nil
}

// perSession reports whether each MCP session gets its own connection to
// t. Remote targets do (so what a target sends a session reaches that
// session only), unless the backend is stateless; stdio targets do with
// reuse: false; openapi targets never do.
func (b *Backend) perSession(t Target) bool {
	switch {
	case t.Stdio != nil:
		return t.Stdio.PerSession
	case t.OpenAPI != nil:
		return false // stateless HTTP calls: one connection serves all
	}
	return !b.opts.Stateless
}

// Name is the backend's label in logs and metrics.
func (b *Backend) Name() string { return b.name }

// ServeHTTP serves MCP: streamable HTTP, or legacy SSE on a path ending
// in /sse (and its message POSTs).
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.closed.Load() {
		http.Error(w, "MCP backend is shutting down", http.StatusServiceUnavailable)
		return
	}
	f := b.front
	f.takeOver(b)
	if err := checkRebinding(r); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	principal := b.principal(r)
	sid := r.Header.Get("Mcp-Session-Id")
	if sid != "" {
		if p, ok := f.principals.Load(sid); ok && p.(string) != principal {
			http.Error(w, "this MCP session belongs to another caller", http.StatusForbidden)
			return
		}
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, b.opts.MaxMessageBytes)
	}
	legacySSE := strings.HasSuffix(r.URL.Path, "/sse") || (r.URL.Query().Get("sessionid") != "" && r.Method == http.MethodPost)
	if !legacySSE && sid != "" && r.Method == http.MethodPost {
		if ls := f.liveSession(sid); ls != nil {
			ls.start()
			defer ls.end()
			if b.serveFast(w, r, ls) {
				return
			}
		}
	}
	tok := strconv.FormatUint(callerSeq.Add(1), 36)
	var vars cel.Vars
	if b.opts.Vars != nil {
		vars = b.opts.Vars(r)
	}
	f.callers.Store(tok, vars)
	defer f.callers.Delete(tok)
	r.Header.Set(callerHeader, tok)
	if legacySSE {
		f.sse.ServeHTTP(w, r)
		return
	}
	sw := &sessionWriter{ResponseWriter: w}
	if sid == "" {
		// A new session's id is bound and tracked as its answer starts,
		// before the client can use it.
		sw.created = func(id string) {
			f.principals.Store(id, principal)
			f.track(id)
		}
	}
	f.streamable.ServeHTTP(sw, r)
	if r.Method == http.MethodDelete {
		f.principals.Delete(sid)
	}
}

func (b *Backend) principal(r *http.Request) string {
	if b.opts.Principal != nil {
		return b.opts.Principal(r)
	}
	host := r.RemoteAddr
	if i := strings.LastIndex(host, ":"); i > 0 {
		host = host[:i]
	}
	return host
}

// sessionWriter passes Flush through (the SDK streams SSE) and calls
// created with the id of a session the SDK creates, when the answer
// that carries it starts.
type sessionWriter struct {
	http.ResponseWriter
	created func(id string)
}

func (w *sessionWriter) started() {
	if w.created != nil {
		if id := w.Header().Get("Mcp-Session-Id"); id != "" {
			w.created(id)
		}
		w.created = nil
	}
}

func (w *sessionWriter) WriteHeader(code int) {
	w.started()
	w.ResponseWriter.WriteHeader(code)
}

func (w *sessionWriter) Write(p []byte) (int, error) {
	w.started()
	return w.ResponseWriter.Write(p)
}

func (w *sessionWriter) Flush() {
	w.started()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// callerSeq numbers requests for callerHeader: a counter will do, since
// the gateway always overwrites the header a client sends.
var callerSeq atomic.Uint64

// Close stops every target (killing stdio process groups) and waits for
// them. Requests after Close get 503. The client sessions end too, unless
// a Backend for the same route (same Name and SessionStore) has been
// built since: it takes them over, and each session's targets reconnect
// on its next request.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		b.wg.Wait()
		return nil
	}
	b.closed.Store(true)
	var ups []*upstream
	for _, u := range b.shared {
		ups = append(ups, u)
	}
	for _, s := range b.sessions {
		for _, u := range s.ups {
			ups = append(ups, u)
		}
	}
	b.mu.Unlock()
	b.front.detach(b)
	var wg sync.WaitGroup
	for _, u := range ups {
		wg.Add(1)
		go func() { defer wg.Done(); u.close() }()
	}
	wg.Wait()
	b.wg.Wait()
	return nil
}

// upstreamFor returns the connection to target i for an MCP session.
func (b *Backend) upstreamFor(ss *sdk.ServerSession, i int) (*upstream, error) {
	t := b.targets[i]
	// A shared target is found without the backend's lock: every call
	// of every session goes through here.
	if b.closed.Load() {
		return nil, errClosed
	}
	if u, ok := b.shared[t.Name]; ok {
		return u, nil
	}
	key := sessionTarget{ss, i}
	if u, ok := b.sessionUps.Load(key); ok {
		return u.(*upstream), nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil, errClosed
	}
	s := b.sessions[ss]
	if s == nil {
		s = &session{ups: map[string]*upstream{}}
		b.sessions[ss] = s
		// The session's own processes die with it.
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			ss.Wait()
			b.mu.Lock()
			delete(b.sessions, ss)
			for j := range b.targets {
				b.sessionUps.Delete(sessionTarget{ss, j})
			}
			b.mu.Unlock()
			for _, u := range s.ups {
				u.close()
			}
		}()
	}
	u := s.ups[t.Name]
	if u == nil {
		u = newUpstream(b, t, b.front.session(ss))
		s.ups[t.Name] = u
		b.sessionUps.Store(key, u)
	}
	return u, nil
}

// call runs fn against target i's session; a transport failure of an HTTP
// target drops the session so the next call reconnects.
func (b *Backend) call(ctx context.Context, ss *sdk.ServerSession, i int, fn func(*sdk.ClientSession) error) error {
	return b.callOn(ctx, ss, i, func(_ *upstream, cs *sdk.ClientSession) error { return fn(cs) })
}

// callOn is call for fn that needs the upstream too (a raw call).
func (b *Backend) callOn(ctx context.Context, ss *sdk.ServerSession, i int, fn func(*upstream, *sdk.ClientSession) error) error {
	u, err := b.upstreamFor(ss, i)
	if err != nil {
		return err
	}
	cs, err := u.session(ctx)
	if err != nil {
		return err
	}
	// While the call is out, what the target asks or tells (sampling,
	// elicitation, logging) goes to this session, on this request's stream.
	done := u.begin(ss, ctx)
	err = fn(u, cs)
	// What the target said before answering goes out before the answer.
	u.notes.catchUp(ctx)
	done()
	var werr *jsonrpc.Error
	if err != nil && !errors.As(err, &werr) && ctx.Err() == nil && u.t.Stdio == nil {
		u.drop(cs)
	}
	return err
}

// varsFor returns the caller's variables for an MCP request.
func (b *Backend) varsFor(req sdk.Request) cel.Vars {
	var in cel.Vars
	if ex := req.GetExtra(); ex != nil && ex.Header != nil {
		if v, ok := b.front.callers.Load(ex.Header.Get(callerHeader)); ok && v != nil {
			in = v.(cel.Vars)
		}
	}
	return callerVars(in)
}

// callerVars is a copy of the caller's variables with every one the MCP
// phase defines present (empty if the request has none).
func callerVars(in cel.Vars) cel.Vars {
	out := make(cel.Vars, len(in)+4)
	for k, x := range in {
		out[k] = x
	}
	for _, k := range []string{"source", "request", "jwt", "extauthz"} {
		if _, ok := out[k]; !ok {
			out[k] = map[string]any{}
		}
	}
	return out
}

// decide applies mcpAuthorization to one tool, prompt or resource.
func (b *Backend) decide(base cel.Vars, method, kind string, item map[string]any) cel.Verdict {
	if b.opts.Authorization == nil {
		return cel.Verdict{Allowed: true, Reason: "no rules"}
	}
	vars := make(cel.Vars, len(base)+1)
	for k, v := range base {
		vars[k] = v
	}
	vars["mcp"] = map[string]any{"method": method, kind: item}
	return b.opts.Authorization.Decide(vars)
}

func (b *Backend) access(msg string, attrs ...any) {
	if b.opts.AccessLog == nil {
		return
	}
	l := b.opts.AccessLog()
	if l == nil {
		return
	}
	// The handler directly, not Logger.Info: the logger would walk the
	// stack for a source position no access line shows (as the
	// gateway's request line does).
	h := l.Handler()
	if ctx := context.Background(); h.Enabled(ctx, slog.LevelInfo) {
		rec := slog.NewRecord(time.Now(), slog.LevelInfo, msg, 0)
		rec.Add(attrs...)
		h.Handle(ctx, rec)
	}
}

func deniedError(kind, name, target string, v cel.Verdict) error {
	msg := fmt.Sprintf("%s %q on target %q denied by mcpAuthorization (%s)", kind, name, target, v.Reason)
	return &jsonrpc.Error{Code: CodeDenied, Message: msg}
}

func invalidParams(format string, args ...any) error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf(format, args...)}
}

// rawArgs turns a call's raw arguments into what the client sends on.
func rawArgs(m json.RawMessage) any {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return m
}
