package mcp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// SessionStore keeps the client-facing side of MCP backends (sessions,
// SSE event stores) across config reloads, by backend Name. Create one
// per gateway and pass it in every Backend's Options; the zero value is
// not usable, a nil *SessionStore keeps nothing.
type SessionStore struct {
	mu     sync.Mutex
	fronts map[string]*frontend
}

// NewSessionStore returns an empty store.
func NewSessionStore() *SessionStore {
	return &SessionStore{fronts: map[string]*frontend{}}
}

// frontend is what MCP clients talk to: one mcp.Server with its
// streamable HTTP and SSE handlers, the sessions they hold and what the
// gateway knows about each (log level, subscriptions). Requests are
// answered by the current Backend; a successor built by a reload becomes
// current when it serves its first request or when the current one is
// closed.
type frontend struct {
	name      string
	store     *SessionStore
	stateless bool
	maxBytes  int64
	// idleTTL closes idle sessions; a reload that changes it starts a
	// new frontend (the SDK handler takes it at construction).
	idleTTL time.Duration

	server     *sdk.Server
	streamable http.Handler
	sse        http.Handler

	current atomic.Pointer[Backend]
	mu      sync.Mutex
	next    *Backend // a successor not yet serving
	clients map[*sdk.ServerSession]*clientSession

	// callers holds the CEL variables of requests being served, keyed by
	// a per-request token the backend puts in a request header it controls
	// (overwriting whatever a client sent there).
	callers sync.Map // token → cel.Vars
	// principals binds Mcp-Session-Id to the caller that created it.
	principals sync.Map // session id → principal

	// live are the streamable HTTP sessions by Mcp-Session-Id, for the
	// fast path (fastpath.go) and the idle timeout, which the gateway
	// keeps rather than the SDK: a call served by the fast path never
	// reaches the SDK's handler, whose idle timer it would not reset.
	live sync.Map // session id → *liveSession
	// replies are the relayed requests of fast-path calls waiting for
	// the client's answer.
	replies sync.Map // request id → *replyWait
	// inflight are the fast-path calls out, for the client's
	// notifications/cancelled.
	inflight sync.Map // fastKey → context.CancelFunc
}

// clientSession is the gateway's state of one client session, kept
// across reloads: what it asked of every target, to ask again when a
// target reconnects.
type clientSession struct {
	ss    *sdk.ServerSession
	mu    sync.Mutex
	level sdk.LoggingLevel // last logging/setLevel; "" if none
	subs  map[string]bool  // exposed URIs subscribed to
}

func (c *clientSession) subscribed(uri string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs[uri]
}

// attach gives b its frontend: the running one of the same name, which b
// will take over, or a new one.
func (s *SessionStore) attach(b *Backend) *frontend {
	if s == nil {
		return newFrontend(b, nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.fronts[b.name]; f != nil && f.stateless == b.opts.Stateless && f.maxBytes == b.opts.MaxMessageBytes && f.idleTTL == b.opts.SessionIdleTTL {
		f.mu.Lock()
		f.next = b
		f.mu.Unlock()
		return f
	}
	f := newFrontend(b, s)
	s.fronts[b.name] = f
	return f
}

func newFrontend(b *Backend, store *SessionStore) *frontend {
	f := &frontend{name: b.name, store: store, stateless: b.opts.Stateless, maxBytes: b.opts.MaxMessageBytes, idleTTL: b.opts.SessionIdleTTL,
		clients: map[*sdk.ServerSession]*clientSession{}}
	f.current.Store(b)
	f.server = sdk.NewServer(&sdk.Implementation{Name: "tailgate-gateway", Title: "tailgate MCP gateway", Version: "1"}, &sdk.ServerOptions{
		// Everything a target may offer; a method no target has is the
		// target's own error, passed through.
		Capabilities: &sdk.ServerCapabilities{
			Tools:       &sdk.ToolCapabilities{ListChanged: true},
			Prompts:     &sdk.PromptCapabilities{ListChanged: true},
			Resources:   &sdk.ResourceCapabilities{ListChanged: true, Subscribe: true},
			Logging:     &sdk.LoggingCapabilities{},
			Completions: &sdk.CompletionCapabilities{},
		},
		SubscribeHandler:   func(context.Context, *sdk.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *sdk.UnsubscribeRequest) error { return nil },
	})
	f.server.AddReceivingMiddleware(f.middleware)
	f.server.AddSendingMiddleware(rawServerSend)
	getServer := func(*http.Request) *sdk.Server { return f.server }
	f.streamable = sdk.NewStreamableHTTPHandler(getServer, &sdk.StreamableHTTPOptions{
		Stateless:           b.opts.Stateless,
		MaxRequestBodyBytes: b.opts.MaxMessageBytes,
		// The idle timeout is the frontend's (liveSession), so that
		// fast-path calls count as use.
		// Streams resume after a dropped connection (Last-Event-ID).
		EventStore: sdk.NewMemoryEventStore(nil),
		// checkRebinding does this for both transports, Origin included.
		DisableLocalhostProtection: true,
	})
	f.sse = sdk.NewSSEHandler(getServer, nil)
	return f
}

// liveSession is a streamable HTTP session the gateway knows by id: it
// closes the session after idleTTL with no POST in progress, as the
// SDK's SessionTimeout does (which the gateway leaves off).
type liveSession struct {
	id  string
	ss  *sdk.ServerSession
	ttl time.Duration

	mu    sync.Mutex
	refs  int // POSTs in progress
	timer *time.Timer
}

// track starts the idle timeout of the streamable session id, just
// created (its initialize answered), and forgets it when it ends.
func (f *frontend) track(id string) {
	var ss *sdk.ServerSession
	for s := range f.server.Sessions() {
		if s.ID() == id {
			ss = s
			break
		}
	}
	if ss == nil {
		return // already gone
	}
	ls := &liveSession{id: id, ss: ss, ttl: f.idleTTL}
	if _, dup := f.live.LoadOrStore(id, ls); dup {
		return
	}
	ls.mu.Lock()
	ls.timer = time.AfterFunc(ls.ttl, ls.expire)
	ls.mu.Unlock()
	go func() {
		ss.Wait()
		f.live.Delete(id)
		ls.mu.Lock()
		ls.timer.Stop()
		ls.mu.Unlock()
	}()
}

// liveSession returns the tracked session id, or nil.
func (f *frontend) liveSession(id string) *liveSession {
	if v, ok := f.live.Load(id); ok {
		return v.(*liveSession)
	}
	return nil
}

// start marks a POST of the session as in progress: the session is not
// idle until end.
func (ls *liveSession) start() {
	ls.mu.Lock()
	ls.refs++
	if ls.refs == 1 && ls.timer != nil {
		ls.timer.Stop()
	}
	ls.mu.Unlock()
}

func (ls *liveSession) end() {
	ls.mu.Lock()
	ls.refs--
	if ls.refs == 0 && ls.timer != nil {
		ls.timer.Reset(ls.ttl)
	}
	ls.mu.Unlock()
}

func (ls *liveSession) expire() {
	ls.mu.Lock()
	busy := ls.refs > 0
	ls.mu.Unlock()
	if !busy {
		ls.ss.Close()
	}
}

// backend is the Backend answering requests now.
func (f *frontend) backend() *Backend { return f.current.Load() }

// takeOver makes b current if it is the pending successor (its config
// has been switched in: it is serving).
func (f *frontend) takeOver(b *Backend) {
	if f.current.Load() == b {
		return
	}
	f.mu.Lock()
	promoted := f.next == b
	if promoted {
		f.next = nil
		f.current.Store(b)
	}
	f.mu.Unlock()
	if promoted {
		f.configChanged()
	}
}

// detach is called by a closing Backend: a successor takes over, or, with
// none, the route is gone and so are its sessions.
func (f *frontend) detach(b *Backend) {
	f.mu.Lock()
	if f.next == b {
		f.next = nil
		f.mu.Unlock()
		return
	}
	if f.current.Load() != b {
		f.mu.Unlock()
		return
	}
	if succ := f.next; succ != nil {
		f.next = nil
		f.current.Store(succ)
		f.mu.Unlock()
		f.configChanged()
		return
	}
	f.mu.Unlock()
	if f.store != nil {
		f.store.mu.Lock()
		if f.store.fronts[f.name] == f {
			delete(f.store.fronts, f.name)
		}
		f.store.mu.Unlock()
	}
	for ss := range f.server.Sessions() {
		ss.Close()
	}
}

// configChanged tells every session that what it may list may have
// changed (a reload can add, remove or hide targets).
func (f *frontend) configChanged() {
	ctx := context.Background()
	for ss := range f.server.Sessions() {
		for _, m := range []string{"notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"} {
			notifyRaw(ctx, ss, m, emptyParams(m))
		}
	}
}

// session returns the gateway's state of a client session, creating it
// on first use; it is forgotten when the session ends.
func (f *frontend) session(ss *sdk.ServerSession) *clientSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.clients[ss]
	if c == nil {
		c = &clientSession{ss: ss, subs: map[string]bool{}}
		f.clients[ss] = c
		go func() {
			ss.Wait()
			f.mu.Lock()
			delete(f.clients, ss)
			f.mu.Unlock()
		}()
	}
	return c
}

// sessions lists the known client sessions.
func (f *frontend) sessions() []*clientSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*clientSession, 0, len(f.clients))
	for _, c := range f.clients {
		out = append(out, c)
	}
	return out
}

func (f *frontend) middleware(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		return f.backend().handle(ctx, method, req, next)
	}
}

// checkRebinding is MCP's DNS-rebinding protection: a request that
// arrived on a loopback address must name a loopback host in Host, and
// in Origin if it sends one. Other binds (a tailnet address, a LAN
// address) are not reachable by a rebound browser name alone and are
// governed by the listener's own policies.
func checkRebinding(r *http.Request) error {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || la == nil || !isLoopback(la.String()) {
		return nil
	}
	if !isLoopback(r.Host) {
		return fmt.Errorf("Forbidden: Host %q is not a loopback name on a loopback listener (DNS-rebinding protection)", r.Host)
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !isLoopback(u.Host) {
			return fmt.Errorf("Forbidden: Origin %q is not a loopback origin on a loopback listener (DNS-rebinding protection)", o)
		}
	}
	return nil
}

// CheckRebinding is checkRebinding for the gateway's own loopback pages
// (the admin page): one DNS-rebinding rule for the whole gateway.
func CheckRebinding(r *http.Request) error { return checkRebinding(r) }

// isLoopback reports whether host (with an optional port) is localhost
// or a loopback address.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
