package mcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"

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
}

// Backend serves one MCP endpoint federating its targets. It implements
// the gateway's Backend interface (Name and http.Handler).
type Backend struct {
	name       string
	opts       Options
	targets    []Target
	metrics    *Metrics
	log        *slog.Logger
	httpClient *http.Client
	client     *sdk.Client
	server     *sdk.Server
	streamable http.Handler
	sse        http.Handler

	mu       sync.Mutex
	shared   map[string]*upstream            // reused targets, by name
	sessions map[*sdk.ServerSession]*session // per-session targets
	owners   map[string]int                  // never mode: exposed name → target index
	resOwner map[string]int                  // resource URI → target index
	closed   bool
	wg       sync.WaitGroup

	// callers holds the CEL variables of requests being served, keyed by
	// a random token the backend puts in a request header it controls.
	callers sync.Map // token → cel.Vars
	// principals binds Mcp-Session-Id to the caller that created it.
	principals sync.Map // session id → principal
}

// session is the per-MCP-session state: its own processes for targets
// that are not reused.
type session struct {
	ups map[string]*upstream
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
	}
	b.client = sdk.NewClient(&sdk.Implementation{Name: "tailgate-gateway", Version: "1"}, nil)
	for _, t := range opts.Targets {
		if t.Stdio == nil || !t.Stdio.PerSession {
			b.shared[t.Name] = newUpstream(b, t, true)
		}
	}
	b.server = sdk.NewServer(&sdk.Implementation{Name: "tailgate-gateway", Title: "tailgate MCP gateway", Version: "1"}, &sdk.ServerOptions{
		Capabilities: &sdk.ServerCapabilities{
			Tools:     &sdk.ToolCapabilities{},
			Prompts:   &sdk.PromptCapabilities{},
			Resources: &sdk.ResourceCapabilities{},
		},
	})
	b.server.AddReceivingMiddleware(b.middleware)
	getServer := func(*http.Request) *sdk.Server { return b.server }
	b.streamable = sdk.NewStreamableHTTPHandler(getServer, &sdk.StreamableHTTPOptions{
		Stateless:           opts.Stateless,
		MaxRequestBodyBytes: opts.MaxMessageBytes,
		// The gateway's own listener policies decide who may connect;
		// the Host check would refuse tailnet names on a loopback bind.
		DisableLocalhostProtection: true,
	})
	b.sse = sdk.NewSSEHandler(getServer, nil)
	return b, nil
}

// Name is the backend's label in logs and metrics.
func (b *Backend) Name() string { return b.name }

// ServeHTTP serves MCP: streamable HTTP, or legacy SSE on a path ending
// in /sse (and its message POSTs).
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		http.Error(w, "MCP backend is shutting down", http.StatusServiceUnavailable)
		return
	}
	principal := b.principal(r)
	if id := r.Header.Get("Mcp-Session-Id"); id != "" {
		if p, ok := b.principals.Load(id); ok && p.(string) != principal {
			http.Error(w, "this MCP session belongs to another caller", http.StatusForbidden)
			return
		}
	}
	tok := newToken()
	var vars cel.Vars
	if b.opts.Vars != nil {
		vars = b.opts.Vars(r)
	}
	b.callers.Store(tok, vars)
	defer b.callers.Delete(tok)
	r.Header.Set(callerHeader, tok)
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, b.opts.MaxMessageBytes)
	}
	if strings.HasSuffix(r.URL.Path, "/sse") || (r.URL.Query().Get("sessionid") != "" && r.Method == http.MethodPost) {
		b.sse.ServeHTTP(w, r)
		return
	}
	sw := &sessionWriter{ResponseWriter: w}
	b.streamable.ServeHTTP(sw, r)
	if id := sw.Header().Get("Mcp-Session-Id"); id != "" && r.Header.Get("Mcp-Session-Id") == "" {
		b.principals.Store(id, principal)
	}
	if r.Method == http.MethodDelete {
		b.principals.Delete(r.Header.Get("Mcp-Session-Id"))
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

// sessionWriter passes Flush through (the SDK streams SSE).
type sessionWriter struct{ http.ResponseWriter }

func (w *sessionWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Close stops every target (killing stdio process groups) and waits for
// them. Requests after Close get 503.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.wg.Wait()
		return nil
	}
	b.closed = true
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
	// End the downstream sessions too: a replaced config keeps no client
	// sessions (clients re-initialize against the new one), and their
	// per-session processes stop with them.
	for ss := range b.server.Sessions() {
		ss.Close()
	}
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
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	if u, ok := b.shared[t.Name]; ok {
		return u, nil
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
			b.mu.Unlock()
			for _, u := range s.ups {
				u.close()
			}
		}()
	}
	u := s.ups[t.Name]
	if u == nil {
		u = newUpstream(b, t, false)
		s.ups[t.Name] = u
	}
	return u, nil
}

// call runs fn against target i's session; a transport failure of an HTTP
// target drops the session so the next call reconnects.
func (b *Backend) call(ctx context.Context, ss *sdk.ServerSession, i int, fn func(*sdk.ClientSession) error) error {
	u, err := b.upstreamFor(ss, i)
	if err != nil {
		return err
	}
	cs, err := u.session(ctx)
	if err != nil {
		return err
	}
	err = fn(cs)
	var werr *jsonrpc.Error
	if err != nil && !errors.As(err, &werr) && ctx.Err() == nil && u.t.Stdio == nil {
		u.drop(cs)
	}
	return err
}

// varsFor returns the caller's variables for an MCP request.
func (b *Backend) varsFor(req sdk.Request) cel.Vars {
	out := cel.Vars{}
	if ex := req.GetExtra(); ex != nil && ex.Header != nil {
		if v, ok := b.callers.Load(ex.Header.Get(callerHeader)); ok && v != nil {
			for k, x := range v.(cel.Vars) {
				out[k] = x
			}
		}
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
	if b.opts.AccessLog != nil {
		if l := b.opts.AccessLog(); l != nil {
			l.Info(msg, attrs...)
		}
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
