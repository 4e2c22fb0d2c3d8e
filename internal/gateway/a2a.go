package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// A2A (Agent2Agent) routes, `policies.a2a: {}`, as agentgateway serves
// them (crates/agentgateway/src/a2a): a client first fetches the agent's
// card from /.well-known/agent-card.json (A2A v0.3+) or
// /.well-known/agent.json (older), then calls the URL the card names with
// JSON-RPC. Left alone, that URL is the agent's own address and every call
// after the first would bypass the gateway. So on an A2A route the gateway
//
//   - rewrites the card's URLs to the address the client reached the
//     gateway at: v0.3's `url` (and `additionalInterfaces[].url`), v1.0's
//     `supportedInterfaces[].url`, keeping each interface's path relative
//     to where the agent serves its card;
//   - passes JSON-RPC calls through untouched (a streamed answer, SSE, is
//     flushed event by event, never buffered) and logs each call's method
//     and, for a JSON answer, its outcome, error code, result kind, task
//     state and context id — the a2a.* fields of agentgateway's log.

// a2aCall is what the gateway learns about one request on an A2A route.
type a2aCall struct {
	// publicPath is the escaped path the client asked for, before any
	// urlRewrite: where the client found the card is where the agent
	// lives as the client sees it.
	publicPath string
	card       bool
	// method is a call's JSON-RPC method; "unknown" when the body could
	// not be read as one.
	method string
	// answer keeps the first bytes of a call's JSON answer for the log.
	answer *cappedBuffer
}

const (
	// a2aCardLimit bounds an agent card the gateway reads to rewrite.
	a2aCardLimit = 1 << 20
	// a2aPeekLimit is how much of a call's body is read to find its
	// method; the body is passed on whole either way.
	a2aPeekLimit = 64 << 10
	// a2aAnswerLimit is how much of a JSON answer is kept for the log; a
	// longer answer is logged without its outcome.
	a2aAnswerLimit = 256 << 10
)

var a2aCardSuffixes = []string{"/.well-known/agent-card.json", "/.well-known/agent.json"}

// a2aBackend is a host backend on an A2A route.
type a2aBackend struct {
	*hostBackend
}

func newA2ABackend(b *hostBackend) *a2aBackend {
	b.proxy.ModifyResponse = a2aResponse
	return &a2aBackend{hostBackend: b}
}

func (b *a2aBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ri := infoFrom(r.Context()); ri != nil && ri.a2a != nil {
		ri.a2a.classify(r)
	}
	b.hostBackend.ServeHTTP(w, r)
}

// classify reads what kind of A2A request r is, as the backend will see
// it (after urlRewrite).
func (a *a2aCall) classify(r *http.Request) {
	switch {
	case r.Method == http.MethodGet && cardPath(r.URL.Path):
		a.card = true
		// Ask for the card uncompressed: the transport then decodes
		// whatever the agent sends, and the gateway can rewrite it.
		r.Header.Del("Accept-Encoding")
	case r.Method == http.MethodPost:
		a.method = "unknown"
		if isJSON(r.Header.Get("Content-Type")) && r.Body != nil && r.Body != http.NoBody {
			a.method = peekMethod(r)
		}
	}
}

func cardPath(p string) bool {
	for _, s := range a2aCardSuffixes {
		if strings.HasSuffix(p, s) {
			return true
		}
	}
	return false
}

func trimCardSuffix(p string) string {
	for _, s := range a2aCardSuffixes {
		if t, ok := strings.CutSuffix(p, s); ok {
			return t
		}
	}
	return p
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// peekMethod reads up to a2aPeekLimit bytes of r's body for the JSON-RPC
// "method" and puts them back in front of the rest, so the backend gets
// the body unchanged.
func peekMethod(r *http.Request) string {
	head := make([]byte, a2aPeekLimit)
	n, err := io.ReadFull(r.Body, head)
	head = head[:n]
	rest := r.Body
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), rest), rest}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "unknown"
	}
	if m := jsonRPCMethod(head); m != "" {
		return m
	}
	return "unknown"
}

// jsonRPCMethod finds the top-level "method" string of a JSON object,
// which may be cut short after it: members are read one at a time and
// reading stops at the method.
func jsonRPCMethod(b []byte) string {
	d := json.NewDecoder(bytes.NewReader(b))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return ""
		}
		if k == "method" {
			var m string
			if d.Decode(&m) != nil {
				return ""
			}
			return m
		}
		var skip json.RawMessage
		if d.Decode(&skip) != nil {
			return ""
		}
	}
	return ""
}

// a2aResponse is the A2A route's ReverseProxy.ModifyResponse: it rewrites
// agent cards and keeps the start of JSON answers for the log. An error
// becomes a 502 (the proxy's ErrorHandler).
func a2aResponse(resp *http.Response) error {
	ri := infoFrom(resp.Request.Context())
	if ri == nil || ri.a2a == nil {
		return nil
	}
	a := ri.a2a
	switch {
	case a.card && resp.StatusCode/100 == 2:
		// Only a card is rewritten: an agent's 404 page stays a 404.
		return rewriteCard(resp, a.publicBase(resp.Request))
	case a.method != "" && isJSON(resp.Header.Get("Content-Type")):
		a.answer = &cappedBuffer{max: a2aAnswerLimit}
		resp.Body = teeBody{resp.Body, a.answer}
	}
	return nil
}

// publicBase is the URL the client reached the agent at, without the
// card's file name: scheme and host as the client used them (the
// gateway's X-Forwarded-Proto and -Host, which only a trusted proxy may
// have set; see setForwarding), the path before any urlRewrite.
func (a *a2aCall) publicBase(out *http.Request) string {
	scheme := firstValue(out.Header.Get("X-Forwarded-Proto"))
	if scheme != "http" && scheme != "https" {
		scheme = "http"
	}
	host := firstValue(out.Header.Get("X-Forwarded-Host"))
	if !validHost(host) {
		host = ""
	}
	if host == "" {
		if in := infoFrom(out.Context()); in != nil && in.vars != nil {
			host = in.vars.r.Host
		}
	}
	return scheme + "://" + host + trimCardSuffix(a.publicPath)
}

func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

// validHost admits host or host:port and nothing that would change the
// URL's meaning once written into the card.
func validHost(h string) bool {
	if h == "" || strings.ContainsAny(h, "/?#@\\ \t") {
		return false
	}
	u, err := url.Parse("http://" + h)
	return err == nil && u.Host == h
}

// rewriteCard points the card at base. The card's other fields are kept
// (numbers exactly); members are re-encoded in sorted order.
func rewriteCard(resp *http.Response, base string) error {
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fmt.Errorf("agent card: content-encoding %q cannot be rewritten", ce)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, a2aCardLimit+1))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("agent card: %w", err)
	}
	if len(body) > a2aCardLimit {
		return fmt.Errorf("agent card: larger than %d bytes", a2aCardLimit)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var card map[string]any
	if err := d.Decode(&card); err != nil {
		return errors.New("agent card: not a JSON object")
	}
	// The agent's own base: where it serves its card, as it sees the path.
	agentBase := trimCardSuffix(resp.Request.URL.Path)
	switch ifaces, ok := card["supportedInterfaces"]; {
	case ok: // A2A v1.0
		if err := rewriteInterfaces(ifaces, base, agentBase, "supportedInterfaces"); err != nil {
			return err
		}
	case card["url"] != nil: // A2A v0.3
		card["url"] = base
		if ifaces, ok := card["additionalInterfaces"]; ok {
			if err := rewriteInterfaces(ifaces, base, agentBase, "additionalInterfaces"); err != nil {
				return err
			}
		}
	default:
		// A card the gateway cannot point at itself would send the
		// client around it: refused, not passed on.
		return errors.New("agent card: no url or supportedInterfaces")
	}
	out, err := json.Marshal(card)
	if err != nil {
		return fmt.Errorf("agent card: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	return nil
}

// rewriteInterfaces anchors each interface's URL at base: its path
// relative to the agent's base (whole segments only, so /weather does not
// claim /weather-v2) is appended to base; a path outside the agent's base
// is appended whole.
func rewriteInterfaces(v any, base, agentBase, field string) error {
	list, ok := v.([]any)
	if !ok {
		return fmt.Errorf("agent card: %s is not a list", field)
	}
	for _, item := range list {
		iface, ok := item.(map[string]any)
		if !ok {
			continue
		}
		s, ok := iface["url"].(string)
		if !ok {
			continue
		}
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		p := u.EscapedPath()
		if u.RawQuery != "" {
			p += "?" + u.RawQuery
		}
		if rel, ok := underPath(p, agentBase); ok {
			p = rel
		}
		iface["url"] = base + p
	}
	return nil
}

// underPath is p without prefix when prefix ends at a segment boundary of
// p. An empty prefix (the card at the root) claims nothing.
func underPath(p, prefix string) (string, bool) {
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return "", false
	}
	rest, ok := strings.CutPrefix(p, prefix)
	if !ok || (rest != "" && rest[0] != '/' && rest[0] != '?') {
		return "", false
	}
	return rest, true
}

// logAttrs appends the call's a2a.* fields; nil adds nothing.
func (a *a2aCall) logAttrs(attrs []slog.Attr) []slog.Attr {
	if a == nil || (!a.card && a.method == "") {
		return attrs
	}
	attrs = append(attrs, slog.String("protocol", "a2a"))
	if a.method == "" {
		return attrs
	}
	attrs = append(attrs, slog.String("a2a.method", a.method))
	if a.answer == nil || a.answer.overflow {
		return attrs
	}
	return append(attrs, a2aOutcome(a.answer.b.Bytes())...)
}

// a2aOutcome reads a JSON-RPC answer: v0.3 puts the Task or Message on
// `result` (with `kind`), v1.0 nests it as result.task / result.message.
func a2aOutcome(b []byte) []slog.Attr {
	var m struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code *int64 `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	type payload struct {
		Kind      string `json:"kind"`
		ContextID string `json:"contextId"`
		Status    *struct {
			State string `json:"state"`
		} `json:"status"`
	}
	var r struct {
		payload
		Task    *payload `json:"task"`
		Message *payload `json:"message"`
	}
	hasResult := len(m.Result) > 0 && string(m.Result) != "null"
	if hasResult {
		json.Unmarshal(m.Result, &r)
	}
	var out []slog.Attr
	switch {
	case m.Error != nil:
		out = append(out, slog.String("a2a.response.outcome", "error"))
		if m.Error.Code != nil {
			out = append(out, slog.Int64("a2a.response.error_code", *m.Error.Code))
		}
		return out
	case hasResult:
		out = append(out, slog.String("a2a.response.outcome", "success"))
	default:
		return append(out, slog.String("a2a.response.outcome", "unknown"))
	}
	p := r.payload
	switch {
	case p.Kind != "":
	case r.Task != nil:
		p = *r.Task
		p.Kind = "task"
	case r.Message != nil:
		p = *r.Message
		p.Kind = "message"
	}
	if p.Kind != "" {
		out = append(out, slog.String("a2a.result.kind", p.Kind))
	}
	if p.Status != nil && p.Status.State != "" {
		out = append(out, slog.String("a2a.task.state", p.Status.State))
	}
	if p.ContextID != "" {
		out = append(out, slog.String("a2a.context.id", p.ContextID))
	}
	return out
}

// cappedBuffer keeps the first max bytes written to it and notes whether
// more came.
type cappedBuffer struct {
	b        bytes.Buffer
	max      int
	overflow bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.b.Len(); room < len(p) {
		c.overflow = true
		if room > 0 {
			c.b.Write(p[:room])
		}
		return len(p), nil
	}
	return c.b.Write(p)
}

// teeBody copies what the proxy reads from an answer into w.
type teeBody struct {
	io.ReadCloser
	w io.Writer
}

func (t teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if n > 0 {
		t.w.Write(p[:n])
	}
	return n, err
}
