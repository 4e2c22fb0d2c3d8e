package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// a2aAgent is a small A2A agent: cards in the v0.3 and v1.0 shapes naming
// its own address, JSON-RPC message/send answered with a task, and
// message/stream answered with SSE whose second event is only sent once
// the test has read the first (so a gateway that buffers the stream
// hangs instead of passing).
type a2aAgent struct {
	*httptest.Server
	firstEventSeen chan struct{}
	methods        chan string
}

func newA2AAgent(t *testing.T) *a2aAgent {
	t.Helper()
	a := &a2aAgent{firstEventSeen: make(chan struct{}), methods: make(chan string, 10)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/agent-card.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"name":"hello","protocolVersion":"0.3.0","version":"1.0.0","capabilities":{"streaming":true},"skills":[{"id":"hi","tags":["x"],"weight":1.50}],
			"url":"%[1]s/","preferredTransport":"JSONRPC",
			"additionalInterfaces":[{"transport":"JSONRPC","url":"%[1]s/"},{"transport":"HTTP+JSON","url":"%[1]s/rest/v1?tenant=a"}]}`, a.URL)
	})
	mux.HandleFunc("GET /.well-known/agent.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"name":"legacy","url":"%s"}`, a.URL)
	})
	mux.HandleFunc("GET /v1/.well-known/agent-card.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"name":"v1","supportedInterfaces":[
			{"protocolBinding":"JSONRPC","url":"%[1]s/v1/rpc"},
			{"protocolBinding":"JSONRPC","url":"%[1]s/v1-beta/rpc"}]}`, a.URL)
	})
	mux.HandleFunc("GET /broken/.well-known/agent-card.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"name":"no url here"}`)
	})
	mux.HandleFunc("GET /missing/", http.NotFound)
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     any    `json:"id"`
			Method string `json:"method"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		a.methods <- req.Method
		switch req.Method {
		case "message/send":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%v,"result":{"kind":"task","id":"t1","contextId":"ctx-42","status":{"state":"completed"}}}`, req.ID)
		case "message/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"result\":{\"kind\":\"status-update\",\"status\":{\"state\":\"working\"}}}\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-a.firstEventSeen:
			case <-r.Context().Done():
				return
			}
			fmt.Fprint(w, "data: {\"result\":{\"kind\":\"status-update\",\"status\":{\"state\":\"completed\"},\"final\":true}}\n\n")
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%v,"error":{"code":-32601,"message":"method not found"}}`, req.ID)
		}
	})
	a.Server = httptest.NewServer(mux)
	t.Cleanup(a.Close)
	return a
}

func startA2AGateway(t *testing.T, agent *a2aAgent) (*testGateway, int) {
	t.Helper()
	port, trustedPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`
binds:
- port: %[1]d
  listeners:
  - routes:
    - name: weather
      matches: [{path: {pathPrefix: /agents/weather}}]
      policies:
        a2a: {}
        urlRewrite: {path: {prefix: /v1}}
      backends: [{host: %[3]s}]
    - name: plain
      matches: [{path: {pathPrefix: /plain}}]
      policies:
        urlRewrite: {path: {prefix: /}}
      backends: [{host: %[3]s}]
    - name: agent
      policies: {a2a: {}}
      backends: [{host: %[3]s}]
- port: %[2]d
  trustedProxies: [127.0.0.1/32]
  listeners:
  - routes:
    - policies: {a2a: {}}
      backends: [{host: %[3]s}]
`, port, trustedPort, hostOf(agent.Server))
	return startGateway(t, cfg, port), trustedPort
}

func getJSON(t *testing.T, url string, hdr ...string) map[string]any {
	t.Helper()
	st, body, _ := get(t, url, hdr...)
	if st != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, st, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
	return m
}

func TestA2AAgentCardPointsBackAtTheGateway(t *testing.T) {
	agent := newA2AAgent(t)
	g, trustedPort := startA2AGateway(t, agent)
	gw := fmt.Sprintf("http://127.0.0.1:%d", g.port)

	// v0.3: url and every additional interface, the rest untouched.
	card := getJSON(t, g.url("/.well-known/agent-card.json"))
	if card["url"] != gw {
		t.Errorf("url = %v, want %s", card["url"], gw)
	}
	ifaces := card["additionalInterfaces"].([]any)
	if u := ifaces[0].(map[string]any)["url"]; u != gw+"/" {
		t.Errorf("additionalInterfaces[0].url = %v, want %s/", u, gw)
	}
	if u := ifaces[1].(map[string]any)["url"]; u != gw+"/rest/v1?tenant=a" {
		t.Errorf("additionalInterfaces[1].url = %v", u)
	}
	if card["name"] != "hello" || card["preferredTransport"] != "JSONRPC" {
		t.Errorf("other fields changed: %v", card)
	}
	if _, body, _ := get(t, g.url("/.well-known/agent-card.json")); !strings.Contains(body, `"weight":1.50`) {
		t.Errorf("a number was re-encoded: %s", body)
	}
	// The older well-known name too.
	if c := getJSON(t, g.url("/.well-known/agent.json")); c["url"] != gw {
		t.Errorf("agent.json url = %v, want %s", c["url"], gw)
	}

	// v1.0 behind a urlRewrite: the interface path is kept relative to
	// where the agent serves its card and anchored where the client found
	// it; a path outside the agent's base (/v1-beta) is kept whole.
	c := getJSON(t, g.url("/agents/weather/.well-known/agent-card.json"))
	si := c["supportedInterfaces"].([]any)
	if u := si[0].(map[string]any)["url"]; u != gw+"/agents/weather/rpc" {
		t.Errorf("supportedInterfaces[0].url = %v, want %s/agents/weather/rpc", u, gw)
	}
	if u := si[1].(map[string]any)["url"]; u != gw+"/agents/weather/v1-beta/rpc" {
		t.Errorf("supportedInterfaces[1].url = %v", u)
	}

	// A route without a2a passes the card as the agent wrote it.
	if c := getJSON(t, g.url("/plain/.well-known/agent-card.json")); c["url"] != agent.URL+"/" {
		t.Errorf("non-A2A route rewrote the card: url = %v", c["url"])
	}

	// The client's own X-Forwarded-* are not believed from an untrusted
	// peer; from a trusted proxy they name the public address.
	if c := getJSON(t, g.url("/.well-known/agent-card.json"), "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https"); c["url"] != gw {
		t.Errorf("untrusted X-Forwarded-* used: url = %v", c["url"])
	}
	trusted := fmt.Sprintf("http://127.0.0.1:%d/.well-known/agent-card.json", trustedPort)
	if c := getJSON(t, trusted, "X-Forwarded-Host", "agents.example.com", "X-Forwarded-Proto", "https"); c["url"] != "https://agents.example.com" {
		t.Errorf("behind a trusted proxy: url = %v, want https://agents.example.com", c["url"])
	}
	if c := getJSON(t, trusted, "Host", "gw.example:8443"); c["url"] != "http://gw.example:8443" {
		t.Errorf("Host: url = %v, want http://gw.example:8443", c["url"])
	}
}

func TestA2ACardsTheGatewayCannotRewriteAreRefused(t *testing.T) {
	agent := newA2AAgent(t)
	g, _ := startA2AGateway(t, agent)
	// A card without any URL would leave the client calling the agent
	// directly: 502, not passed on.
	if st, body, _ := get(t, g.url("/broken/.well-known/agent-card.json")); st != http.StatusBadGateway || strings.Contains(body, "no url here") {
		t.Errorf("card without url: %d %q, want 502", st, body)
	}
	line := lineWith(g.access.WaitFor(t, "path=/broken/"), "path=/broken/")
	if !strings.Contains(line, "no url or supportedInterfaces") {
		t.Errorf("log line does not say why: %s", line)
	}
	// The agent's own errors pass as they are.
	if st, _, _ := get(t, g.url("/missing/.well-known/agent-card.json")); st != http.StatusNotFound {
		t.Errorf("missing card: %d, want the agent's 404", st)
	}
}

func postJSONRPC(t *testing.T, url, method string) *http.Response {
	t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":%q,"params":{"message":{"role":"user","parts":[{"kind":"text","text":"hi"}],"messageId":"m1"}}}`, method)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestA2ACallsPassThroughAndAreLogged(t *testing.T) {
	agent := newA2AAgent(t)
	g, _ := startA2AGateway(t, agent)

	resp := postJSONRPC(t, g.url("/"), "message/send")
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"contextId":"ctx-42"`) || !strings.Contains(string(b), `"id":7`) {
		t.Fatalf("message/send: %d %s", resp.StatusCode, b)
	}
	if m := <-agent.methods; m != "message/send" {
		t.Errorf("agent got %q", m)
	}
	line := lineWith(g.access.WaitFor(t, "a2a.method=message/send"), "a2a.method=message/send")
	for _, want := range []string{"protocol=a2a", "a2a.response.outcome=success", "a2a.result.kind=task", "a2a.task.state=completed", "a2a.context.id=ctx-42"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s: %s", want, line)
		}
	}

	// A JSON-RPC error in a 200 answer is logged with its code.
	resp = postJSONRPC(t, g.url("/"), "tasks/nope")
	io.Copy(io.Discard, resp.Body)
	line = lineWith(g.access.WaitFor(t, "a2a.method=tasks/nope"), "a2a.method=tasks/nope")
	for _, want := range []string{"a2a.response.outcome=error", "a2a.response.error_code=-32601"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s: %s", want, line)
		}
	}
}

func TestA2AStreamsPassUnbuffered(t *testing.T) {
	agent := newA2AAgent(t)
	g, _ := startA2AGateway(t, agent)
	resp := postJSONRPC(t, g.url("/"), "message/stream")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	// The agent holds the second event until the first has arrived here:
	// a gateway that buffered the stream would never deliver the first.
	first, err := rd.ReadString('\n')
	if err != nil || !strings.Contains(first, `"working"`) {
		t.Fatalf("first event: %q %v", first, err)
	}
	close(agent.firstEventSeen)
	rest, _ := io.ReadAll(rd)
	if !strings.Contains(string(rest), `"completed"`) {
		t.Errorf("rest of stream: %q", rest)
	}
	line := lineWith(g.access.WaitFor(t, "a2a.method=message/stream"), "a2a.method=message/stream")
	if strings.Contains(line, "a2a.response.outcome") {
		t.Errorf("a stream has no single outcome to log: %s", line)
	}
}

func TestA2AFindsACallsMethodInItsFirstBytes(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{}}`, "tasks/get"},
		{`{"params":{"method":"inner"},"id":1,"method":"tasks/cancel"}`, "tasks/cancel"},
		{`{"jsonrpc":"2.0","method":"message/send","params":{"text":"` + strings.Repeat("x", a2aPeekLimit) + `"}}`, "message/send"},
		{`{"jsonrpc":"2.0","params":{"text":"` + strings.Repeat("x", a2aPeekLimit) + `"},"method":"late"}`, ""},
		{`{"jsonrpc":"2.0"`, ""},
		{`[{"method":"batch"}]`, ""},
		{`{"method":7}`, ""},
	} {
		b := []byte(tc.body)
		if len(b) > a2aPeekLimit {
			b = b[:a2aPeekLimit]
		}
		if got := jsonRPCMethod(b); got != tc.want {
			t.Errorf("jsonRPCMethod(%.40q...) = %q, want %q", tc.body, got, tc.want)
		}
	}
}
