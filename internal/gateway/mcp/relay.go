package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// What a target sends its client (the gateway) is relayed to the client
// session it concerns:
//
//   - requests (sampling/createMessage, elicitation/create, roots/list),
//     logging and elicitation-complete notifications go to the session
//     whose request is out on that target, on that request's stream (the
//     latest, if several are); with none, a per-session target's own
//     session gets them on its standalone stream, and a shared target's
//     notifications go to every session (its requests fail);
//   - progress goes to the request that carried the progress token (the
//     gateway gives each request its own token upstream);
//   - list-changed notifications go to the target's session, or for a
//     shared target to every session;
//   - resources/updated goes to the sessions subscribed to that resource,
//     under its exposed (prefixed) URI.
//
// Messages are relayed as they are, not re-validated: what the client
// answers is what the target gets.

// progressRoute is where a target's progress notifications go.
type progressRoute struct {
	ss   *sdk.ServerSession
	ctx  context.Context
	orig any          // the client's progress token
	last atomic.Int64 // when the last notification was relayed (unix ns)
}

// progressDrain bounds how long a request that carried a progress token
// waits, after its target answered, for notifications the target sent
// before answering: the SDK's client hands notifications to handlers on
// another goroutine than responses, so the last ones can trail the
// response by a moment.
var progressDrain = 50 * time.Millisecond

var progressSeq atomic.Int64

// progressPrefix begins the progress tokens the gateway gives targets.
const progressPrefix = "tailgate-"

// withProgress gives a request's _meta a progress token of the gateway's
// own (clients' tokens may collide on a shared target) and routes that
// token's notifications back; done forgets it, after draining what
// trails the response unless drain is false (the request went by a raw
// call, whose progress is relayed in order with its answer). meta
// without a token is returned as is.
func (b *Backend) withProgress(ctx context.Context, ss *sdk.ServerSession, meta map[string]any) (map[string]any, func(drain bool)) {
	tok, ok := meta["progressToken"]
	if !ok || tok == nil || ss == nil {
		return meta, func(bool) {}
	}
	own := progressPrefix + strconv.FormatInt(progressSeq.Add(1), 10)
	r := &progressRoute{ss: ss, ctx: ctx, orig: tok}
	b.progress.Store(own, r)
	out := make(map[string]any, len(meta))
	for k, v := range meta {
		out[k] = v
	}
	out["progressToken"] = own
	return out, func(drain bool) {
		if !drain {
			b.progress.Delete(own)
			return
		}
		// Relay what trails the response: wait until no notification
		// for a quiet spell (bounded), then forget the token.
		const quiet = 2 * time.Millisecond
		deadline := time.Now().Add(progressDrain)
		time.Sleep(quiet)
		for time.Now().Before(deadline) && time.Since(time.Unix(0, r.last.Load())) < quiet {
			time.Sleep(quiet / 2)
		}
		b.progress.Delete(own)
	}
}

// pendingCall is a client request out on a target.
type pendingCall struct {
	ss  *sdk.ServerSession
	ctx context.Context
	// fast is set for a call the fast path serves: what concerns it is
	// written to its response, which the SDK does not know of.
	fast *fastCall
}

// begin records that ss's request (ctx) is out on u; the returned func
// ends it.
func (u *upstream) begin(ss *sdk.ServerSession, ctx context.Context) func() {
	if ss == nil {
		return func() {}
	}
	p := &pendingCall{ss: ss, ctx: ctx, fast: fastCallOf(ctx)}
	u.mu.Lock()
	u.calls = append(u.calls, p)
	u.mu.Unlock()
	return func() {
		u.mu.Lock()
		for i, q := range u.calls {
			if q == p {
				u.calls = append(u.calls[:i], u.calls[i+1:]...)
				break
			}
		}
		u.mu.Unlock()
	}
}

// route is the session (and request context) a message from u concerns
// now; nil if it cannot be told (a shared target with nothing out). fast
// is set if that request is the fast path's.
func (u *upstream) route() (*sdk.ServerSession, context.Context, *fastCall) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if n := len(u.calls); n > 0 {
		return u.calls[n-1].ss, u.calls[n-1].ctx, u.calls[n-1].fast
	}
	if u.ds != nil {
		return u.ds.ss, context.Background(), nil
	}
	return nil, nil, nil
}

// fromTarget is the receiving middleware of u's client: it relays what
// the target sends and leaves ping and cancellation to the SDK.
func (u *upstream) fromTarget(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		if relayedInOrder(method) {
			defer u.notes.noteRelayed()
		}
		switch method {
		case "sampling/createMessage", "elicitation/create", "roots/list":
			return u.relayRequest(ctx, method, req.GetParams())
		case "notifications/progress":
			if p, ok := req.GetParams().(*sdk.ProgressNotificationParams); ok {
				u.relayProgress(p)
			}
			return nil, nil
		case "notifications/message", "notifications/elicitation/complete":
			if ss, rctx, fast := u.route(); fast != nil {
				fast.notify(method, req.GetParams())
			} else if ss != nil {
				notifyRaw(rctx, ss, method, req.GetParams())
			} else {
				u.broadcast(method, req.GetParams(), nil)
			}
			return nil, nil
		case "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed":
			if u.ds != nil {
				notifyRaw(context.Background(), u.ds.ss, method, req.GetParams())
			} else {
				u.broadcast(method, req.GetParams(), nil)
			}
			return nil, nil
		case "notifications/resources/updated":
			p, ok := req.GetParams().(*sdk.ResourceUpdatedNotificationParams)
			if !ok {
				return nil, nil
			}
			c := *p
			c.URI = u.b.exposeURI(u.index(), p.URI)
			if u.ds != nil {
				notifyRaw(context.Background(), u.ds.ss, method, &c)
			} else {
				u.broadcast(method, &c, func(cs *clientSession) bool { return cs.subscribed(c.URI) })
			}
			return nil, nil
		}
		return next(ctx, method, req)
	}
}

// index is u's target's position in its backend.
func (u *upstream) index() int {
	for i, t := range u.b.targets {
		if t.Name == u.t.Name {
			return i
		}
	}
	return 0
}

// broadcast sends a notification to every client session (that want
// accepts, if set).
func (u *upstream) broadcast(method string, params sdk.Params, want func(*clientSession) bool) {
	for _, cs := range u.b.front.sessions() {
		if want == nil || want(cs) {
			notifyRaw(context.Background(), cs.ss, method, params)
		}
	}
}

// relayRawProgress is a stdio connection's hook for progress
// notifications, called by its reader in order with the answers to raw
// calls: it relays params if their token is the gateway's and reports
// whether it was (the notification is then not the SDK's to handle).
func (u *upstream) relayRawProgress(params json.RawMessage) bool {
	var p sdk.ProgressNotificationParams
	if json.Unmarshal(params, &p) != nil {
		return false
	}
	if tok, ok := p.ProgressToken.(string); !ok || !strings.HasPrefix(tok, progressPrefix) {
		return false
	}
	u.relayProgress(&p)
	return true
}

func (u *upstream) relayProgress(p *sdk.ProgressNotificationParams) {
	v, ok := u.b.progress.Load(fmt.Sprint(p.ProgressToken))
	if !ok {
		return // the request is over, or the token is not ours
	}
	r := v.(*progressRoute)
	c := *p
	c.ProgressToken = r.orig
	r.ss.NotifyProgress(r.ctx, &c)
	r.last.Store(time.Now().UnixNano())
}

// relayRequest asks the client session a target's request concerns and
// returns its answer. The request is cancelled if the target cancels it
// or the client's request it belongs to ends.
func (u *upstream) relayRequest(ctx context.Context, method string, params sdk.Params) (sdk.Result, error) {
	ss, rctx, fast := u.route()
	if ss == nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest,
			Message: fmt.Sprintf("%s from shared target %q outside any client request: no client session to ask", method, u.t.Name)}
	}
	if p, ok := params.(*sdk.ElicitParams); ok && p.Mode == "" && p.URL == "" {
		// What the SDK's Elicit infers; clients of 2025-11-25 reject an
		// empty mode.
		c := *p
		c.Mode = "form"
		params = &c
	}
	cctx, cancel := context.WithCancel(rctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	if fast != nil {
		return fast.request(cctx, method, params)
	}
	return requestRaw(cctx, ss, method, params)
}

// The SDK sends only the messages it has a typed method for. To relay
// any message as it is, the gateway calls a typed method (NotifyProgress,
// ListRoots) with the real message in the context, and a sending
// middleware swaps it in.

type rawKey struct{}

type rawMessage struct {
	method string
	params sdk.Params
	res    sdk.Result
}

// notifyRaw sends a notification to a client session; ctx decides the
// stream (a request's, or the standalone one).
func notifyRaw(ctx context.Context, ss *sdk.ServerSession, method string, params sdk.Params) error {
	return ss.NotifyProgress(context.WithValue(ctx, rawKey{}, &rawMessage{method: method, params: params}), &sdk.ProgressNotificationParams{})
}

// requestRaw sends a request to a client session and returns its result.
func requestRaw(ctx context.Context, ss *sdk.ServerSession, method string, params sdk.Params) (sdk.Result, error) {
	m := &rawMessage{method: method, params: params}
	if _, err := ss.ListRoots(context.WithValue(ctx, rawKey{}, m), nil); err != nil {
		return nil, err
	}
	return m.res, nil
}

// rawServerSend is the server's sending middleware for notifyRaw and
// requestRaw.
func rawServerSend(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		m, ok := ctx.Value(rawKey{}).(*rawMessage)
		if !ok || m == nil || (method != "notifications/progress" && method != "roots/list") {
			return next(ctx, method, req)
		}
		ctx = context.WithValue(ctx, rawKey{}, nil)
		ss, _ := req.GetSession().(*sdk.ServerSession)
		res, err := next(ctx, m.method, &sdk.ServerRequest[sdk.Params]{Session: ss, Params: m.params})
		if err != nil || method == "notifications/progress" {
			return res, err
		}
		m.res = res
		return &sdk.ListRootsResult{Roots: []*sdk.Root{}}, nil
	}
}

// notifyTarget sends a notification to a target (roots/list_changed).
func notifyTarget(ctx context.Context, cs *sdk.ClientSession, method string, params sdk.Params) error {
	return cs.NotifyProgress(context.WithValue(ctx, rawKey{}, &rawMessage{method: method, params: params}), &sdk.ProgressNotificationParams{})
}

// rawClientSend is each target client's sending middleware for
// notifyTarget.
func rawClientSend(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		m, ok := ctx.Value(rawKey{}).(*rawMessage)
		if !ok || m == nil || method != "notifications/progress" {
			return next(ctx, method, req)
		}
		ctx = context.WithValue(ctx, rawKey{}, nil)
		cs, _ := req.GetSession().(*sdk.ClientSession)
		return next(ctx, m.method, &sdk.ClientRequest[sdk.Params]{Session: cs, Params: m.params})
	}
}

// emptyParams are the params of a list-changed notification.
func emptyParams(method string) sdk.Params {
	switch method {
	case "notifications/tools/list_changed":
		return &sdk.ToolListChangedParams{}
	case "notifications/prompts/list_changed":
		return &sdk.PromptListChangedParams{}
	}
	return &sdk.ResourceListChangedParams{}
}

// targetClient is the MCP client the gateway connects to a target with:
// for a session's own connection it declares what that client session
// declared (so a target asks for sampling only if the client can do
// it); for a shared one, everything the gateway can relay.
func (u *upstream) targetClient() *sdk.Client {
	caps := &sdk.ClientCapabilities{
		RootsV2:     &sdk.RootCapabilities{ListChanged: true},
		Sampling:    &sdk.SamplingCapabilities{},
		Elicitation: &sdk.ElicitationCapabilities{Form: &sdk.FormElicitationCapabilities{}, URL: &sdk.URLElicitationCapabilities{}},
	}
	if u.ds != nil {
		caps = &sdk.ClientCapabilities{}
		if ip := u.ds.ss.InitializeParams(); ip != nil && ip.Capabilities != nil {
			c := *ip.Capabilities
			caps = &c
		}
	}
	c := sdk.NewClient(&sdk.Implementation{Name: "tailgate-gateway", Version: "1"}, &sdk.ClientOptions{
		Capabilities:   caps,
		MultiRoundTrip: &sdk.MultiRoundTripOptions{Disabled: true},
	})
	c.AddReceivingMiddleware(u.fromTarget)
	c.AddSendingMiddleware(rawClientSend)
	return c
}
