package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
)

// The fast path serves tools/call on a streamable HTTP session without
// the SDK's server: through the SDK, a call is decoded more than once
// (its body, its params, its _meta, each with a fresh 32 KiB decoder
// buffer), passes three goroutines (HTTP handler, connection reader,
// request handler) and its answer is re-encoded into an event stream.
// Here the HTTP handler reads the body once, decodes what routing and
// mcpAuthorization need (id, method, params.name; arguments stay raw),
// calls the target itself (callToolAs: the same routing, authorization,
// metrics and access log as the SDK path) and writes the target's
// answer back.
//
// Only a plain call takes it: one JSON-RPC request (no batch) with
// jsonrpc "2.0", a string or integer id, method tools/call, params
// holding only name and arguments, on a session the gateway tracks
// (created by initialize on this frontend, so initialized), under a
// protocol version up to 2025-11-25, with the Content-Type and Accept
// the SDK requires. Anything else (a _meta with a progress token,
// malformed JSON, an unknown session, another method) goes to the SDK
// exactly as before, with the body as read, so its answers (and errors)
// are the SDK's.
//
// The answer is application/json, as the SDK answers with JSONResponse.
// If the target says something about the call before answering (a log
// line, a request for sampling or elicitation), the response becomes an
// event stream instead, carrying those messages before the answer as the
// SDK's stream would; a request's answer comes back from the client in a
// POST that the fast path takes (its id is one the gateway chose). Such
// a stream has no event ids: a client cannot resume it after a dropped
// connection, as it could not resume a JSON answer.

// fastVersions are the Mcp-Protocol-Version values the fast path serves;
// later versions (SEP-2575, header validation) are the SDK's.
var fastVersions = map[string]bool{"2025-03-26": true, "2025-06-18": true, "2025-11-25": true}

// fastReplyPrefix begins the ids of requests a fast-path call relays to
// its client.
const fastReplyPrefix = "tailgate-fast-"

var fastReplySeq atomic.Uint64

// fastMessage is what the fast path reads of a POSTed message.
type fastMessage struct {
	ID        json.RawMessage
	Method    string
	hasMethod bool // a response has none; "method": "" is a request
	Params    json.RawMessage
	Result    json.RawMessage
	Error     *jsonrpc.Error
}

// maxDepth is the SDK's bound on a message's nesting; a deeper one is
// the SDK's to refuse.
const maxDepth = 1000

// decodeFast reads one JSON-RPC 2.0 message as the SDK would: keys
// matched exactly (encoding/json's struct fields would match "METHOD"),
// nesting bounded. ok is false for anything else (a batch, malformed
// JSON, an unknown or repeated member, a key with escapes), which the
// SDK then judges. Its raw parts are body's bytes.
func decodeFast(body []byte) (m fastMessage, ok bool) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' || tooDeep(body, maxDepth) || !json.Valid(body) {
		return m, false
	}
	var seen uint8
	var version []byte
	ok = eachMember(body, func(k, v []byte) bool {
		var bit uint8
		switch string(k) {
		case "jsonrpc":
			bit, version = 1, v
		case "id":
			bit, m.ID = 2, v
		case "method":
			bit, m.hasMethod = 4, true
			var ok bool
			if m.Method, ok = jsonString(v); !ok {
				return false
			}
		case "params":
			bit, m.Params = 8, v
		case "result":
			bit, m.Result = 16, v
		case "error":
			bit = 32
			if json.Unmarshal(v, &m.Error) != nil {
				return false
			}
		default:
			return false
		}
		if seen&bit != 0 {
			return false // repeated: the SDK's to judge
		}
		seen |= bit
		return true
	})
	return m, ok && string(version) == `"2.0"`
}

// jsonString is the JSON string s decoded; ok is false if s is not a
// string. The common methods cost no allocation.
func jsonString(s []byte) (string, bool) {
	switch string(s) {
	case `"tools/call"`:
		return "tools/call", true
	case `"notifications/cancelled"`:
		return "notifications/cancelled", true
	}
	if p, ok := plainString(s); ok {
		return p, true
	}
	var out string
	return out, json.Unmarshal(s, &out) == nil
}

// tooDeep reports whether data nests objects and arrays deeper than max.
func tooDeep(data []byte, max int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > max {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}

// fastKey names a fast-path call: its session and the JSON of its id.
type fastKey struct{ session, id string }

// serveFast serves r if the fast path can and reports whether it did; if
// not, r's body is as it was for the SDK to read.
func (b *Backend) serveFast(w http.ResponseWriter, r *http.Request, ls *liveSession) bool {
	if b.opts.Stateless || r.Header.Get("Last-Event-ID") != "" || !fastVersions[r.Header.Get("Mcp-Protocol-Version")] {
		return false
	}
	if !isJSON(r.Header.Get("Content-Type")) || !acceptsBoth(r.Header.Values("Accept")) || r.Body == nil {
		return false
	}
	body, err := io.ReadAll(r.Body)
	if err == nil && b.serveFastBody(w, r, ls, body) {
		return true
	}
	// The SDK reads the body (or its error) as it was.
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
	return false
}

// isJSON reports whether a Content-Type is application/json, as the SDK
// requires of a POST.
func isJSON(ct string) bool {
	if strings.EqualFold(ct, "application/json") {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// serveFastBody is serveFast for a body read whole; if it reports false,
// nothing has been written.
func (b *Backend) serveFastBody(w http.ResponseWriter, r *http.Request, ls *liveSession, body []byte) bool {
	m, ok := decodeFast(body)
	if !ok {
		return false // a batch, malformed, or not JSON-RPC 2.0: the SDK's
	}
	f := b.front
	switch {
	case !m.hasMethod && (m.Result != nil || m.Error != nil):
		return f.deliverReply(w, ls.id, m)
	case m.Method == "notifications/cancelled":
		// The SDK gets it too (it answers the POST); a fast-path call it
		// names is cancelled here, as the SDK would cancel its own.
		var p map[string]json.RawMessage
		if json.Unmarshal(m.Params, &p) == nil {
			if id, ok := canonicalID(p["requestId"]); ok {
				if c, ok := f.inflight.Load(fastKey{ls.id, id}); ok {
					c.(context.CancelFunc)()
				}
			}
		}
		return false
	case m.Method != "tools/call":
		return false
	}
	id, ok := canonicalID(m.ID)
	if !ok || ls.ss.InitializeParams() == nil {
		return false
	}
	var p sdk.CallToolParamsRaw
	var seen uint8
	if !eachMember(m.Params, func(k, v []byte) bool {
		var bit uint8
		switch string(k) {
		case "name":
			bit = 1
			var ok bool
			if p.Name, ok = jsonString(v); !ok {
				return false
			}
		case "arguments":
			bit, p.Arguments = 2, v
		default:
			return false // _meta (progress, protocol version) and the like: the SDK's
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}) {
		return false
	}
	if p.Name == "" {
		return false
	}

	key := fastKey{ls.id, id}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if _, dup := f.inflight.LoadOrStore(key, context.CancelFunc(cancel)); dup {
		// As the SDK answers a duplicate of an id it has in flight.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write(rpcError(id, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "duplicate in-flight request ID " + id}))
		return true
	}
	defer f.inflight.Delete(key)
	fc := &fastCall{w: w, f: f, session: ls.id}
	ctx = context.WithValue(ctx, fastCallKey{}, fc)
	var vars cel.Vars
	var who []any
	if b.opts.Authorization == nil && b.opts.CallerLog != nil {
		who = b.opts.CallerLog(r) // no rule reads vars
	} else {
		var in cel.Vars
		if b.opts.Vars != nil {
			in = b.opts.Vars(r)
		}
		vars = callerVars(in)
		who = callerAttrs(vars)
	}
	b.callToolAs(ctx, ls.ss, vars, who, &p, func(res sdk.Result, err error) { fc.finish(id, res, err) })
	return true
}

// acceptsBoth is the SDK's Accept rule for a POST: JSON and event
// streams both acceptable.
func acceptsBoth(values []string) bool {
	var js, sse bool
	for _, v := range values {
		for _, tok := range strings.Split(v, ",") {
			base, _, _ := strings.Cut(tok, ";")
			switch strings.ToLower(strings.TrimSpace(base)) {
			case "application/json", "application/*":
				js = true
			case "text/event-stream", "text/*":
				sse = true
			case "*/*":
				js, sse = true, true
			}
		}
	}
	return js && sse
}

// canonicalID is the JSON of a request id as the SDK writes it back: a
// string, or an integer. Other ids (null, fractions, objects) are the
// SDK's to judge.
func canonicalID(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	if raw[0] == '"' {
		if safeString(raw) {
			return string(raw), true // as Marshal would write it
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		out, _ := json.Marshal(s)
		return string(out), true
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n > 1<<53 || n < -(1<<53) {
		// The SDK reads numbers as float64: past 2^53 its id would not
		// be the client's.
		return "", false
	}
	return strconv.FormatInt(n, 10), true
}

// safeString reports whether the JSON string s is written as
// json.Marshal would write its value: printable ASCII without escapes
// or the characters Marshal escapes for HTML.
func safeString(s []byte) bool {
	if len(s) < 2 || s[len(s)-1] != '"' {
		return false
	}
	for _, c := range s[1 : len(s)-1] {
		if c < 0x20 || c >= 0x7f || c == '\\' || c == '"' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// errReader returns err (if any) once the body replayed before it is
// read, so the SDK sees a body that was too large as too large.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}

type fastCallKey struct{}

// fastCallOf is the fast-path call ctx belongs to, if any.
func fastCallOf(ctx context.Context) *fastCall {
	fc, _ := ctx.Value(fastCallKey{}).(*fastCall)
	return fc
}

// fastCall is the response of one fast-path call.
type fastCall struct {
	w       http.ResponseWriter
	f       *frontend
	session string

	mu   sync.Mutex
	sse  bool // the response is an event stream (headers written)
	done bool // the answer is written: nothing more goes out
}

// errCallOver is the error of relaying something about a fast-path call
// that has been answered (the SDK's "write to closed stream").
var errCallOver = errors.New("the client's request has been answered")

// send writes a message as an event, turning the response into an event
// stream if it is not one yet.
func (c *fastCall) send(msg []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return errCallOver
	}
	if !c.sse {
		h := c.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache, no-transform")
		h.Set("Connection", "keep-alive")
		c.w.WriteHeader(http.StatusOK)
		c.sse = true
	}
	return writeSSE(c.w, msg)
}

func writeSSE(w http.ResponseWriter, msg []byte) error {
	buf := make([]byte, 0, len(msg)+len("event: message\ndata: \n\n"))
	buf = append(buf, "event: message\ndata: "...)
	buf = append(buf, msg...)
	buf = append(buf, "\n\n"...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	return http.NewResponseController(w).Flush()
}

// notify relays a target's notification about the call to its client.
func (c *fastCall) notify(method string, params sdk.Params) {
	msg, err := json.Marshal(struct {
		JSONRPC string     `json:"jsonrpc"`
		Method  string     `json:"method"`
		Params  sdk.Params `json:"params,omitempty"`
	}{"2.0", method, params})
	if err == nil {
		c.send(msg)
	}
}

// replyWait is a relayed request waiting for the client's answer.
type replyWait struct {
	session string
	ch      chan fastMessage
}

// request relays a target's request about the call (sampling,
// elicitation, roots) to its client and returns the client's answer.
func (c *fastCall) request(ctx context.Context, method string, params sdk.Params) (sdk.Result, error) {
	id := fastReplyPrefix + strconv.FormatUint(fastReplySeq.Add(1), 10)
	msg, err := json.Marshal(struct {
		JSONRPC string     `json:"jsonrpc"`
		ID      string     `json:"id"`
		Method  string     `json:"method"`
		Params  sdk.Params `json:"params,omitempty"`
	}{"2.0", id, method, params})
	if err != nil {
		return nil, err
	}
	wait := &replyWait{session: c.session, ch: make(chan fastMessage, 1)}
	c.f.replies.Store(id, wait)
	defer c.f.replies.Delete(id)
	if err := c.send(msg); err != nil {
		return nil, fmt.Errorf("%w: %v", sdk.ErrConnectionClosed, err)
	}
	select {
	case m := <-wait.ch:
		if m.Error != nil {
			return nil, m.Error
		}
		return &rawResult{json: m.Result}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// deliverReply hands a client's answer to the relayed request it
// answers, if that is a fast-path call's of the same session.
func (f *frontend) deliverReply(w http.ResponseWriter, session string, m fastMessage) bool {
	var id string
	if json.Unmarshal(m.ID, &id) != nil || !strings.HasPrefix(id, fastReplyPrefix) {
		return false
	}
	v, ok := f.replies.Load(id)
	if !ok || v.(*replyWait).session != session {
		return false
	}
	if m.Result != nil {
		m.Result = bytes.Clone(m.Result)
	}
	select {
	case v.(*replyWait).ch <- m:
	default: // answered twice: the first answer stands
	}
	w.WriteHeader(http.StatusAccepted)
	return true
}

// rpcError is the JSON-RPC error answer to the request id (its JSON).
func rpcError(id string, e *jsonrpc.Error) []byte {
	b, _ := json.Marshal(e)
	msg := append([]byte(`{"jsonrpc":"2.0","id":`), id...)
	msg = append(append(msg, `,"error":`...), b...)
	return append(msg, '}')
}

// finish writes the call's answer.
func (c *fastCall) finish(id string, res sdk.Result, err error) {
	var msg []byte
	if err == nil {
		var result []byte
		if raw, ok := res.(*rawResult); ok && raw.typed == nil {
			result = raw.json // the target's bytes, not re-encoded
		} else {
			result, err = json.Marshal(res)
		}
		if err == nil {
			msg = make([]byte, 0, len(result)+len(id)+40)
			msg = append(msg, `{"jsonrpc":"2.0","id":`...)
			msg = append(msg, id...)
			msg = append(msg, `,"result":`...)
			msg = append(msg, result...)
			msg = append(msg, '}')
		} else {
			err = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "encoding the result: " + err.Error()}
		}
	}
	if err != nil {
		var werr *jsonrpc.Error
		if !errors.As(err, &werr) {
			werr = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: err.Error()}
		}
		msg = rpcError(id, werr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	if c.sse {
		writeSSE(c.w, msg)
		return
	}
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("Content-Length", strconv.Itoa(len(msg)))
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(msg)
	// Out now, not when the gateway's handler returns (after its access
	// log and metrics).
	http.NewResponseController(c.w).Flush()
}
