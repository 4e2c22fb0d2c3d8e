package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tailgate-dev/tailgate/internal/gateway/mcp"
	"github.com/tailgate-dev/tailgate/internal/testlog"
)

// A plain tools/call is served by the gateway's fast path (fastpath.go),
// anything else by the SDK. These tests post raw JSON-RPC on a real
// session and check that both give the client the same answers, and that
// what the fast path cannot vouch for is refused as the SDK refuses it.

// rawPost posts body on session (none if "") and returns the status, the
// Content-Type and the body.
func rawPost(t *testing.T, url, session string, body string, hdr ...string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// answerOf is the JSON-RPC answer in a response body, JSON or an event
// stream (its last message).
func answerOf(t *testing.T, body string) (id json.RawMessage, result json.RawMessage, rpcErr *jsonrpc.Error) {
	t.Helper()
	msg := body
	if i := strings.LastIndex(body, "data: "); i >= 0 {
		msg = strings.TrimSpace(body[i+len("data: "):])
	}
	var a struct {
		ID     json.RawMessage `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  *jsonrpc.Error  `json:"error"`
	}
	if err := json.Unmarshal([]byte(msg), &a); err != nil {
		t.Fatalf("no JSON-RPC answer in %q: %v", body, err)
	}
	return a.ID, a.Result, a.Error
}

func textOf(t *testing.T, result json.RawMessage) string {
	t.Helper()
	var r sdk.CallToolResult
	if err := json.Unmarshal(result, &r); err != nil {
		t.Fatalf("result %s: %v", result, err)
	}
	return resultText(&r)
}

func TestPlainToolCallAnswersAsTheSDKPathDoes(t *testing.T) {
	g := startGateway(t, federationConfig("conditional", stdioTarget("local", "")))
	cs := connect(t, g.url, nil)
	// Plain: the fast path, answered as JSON, the id as the client sent it.
	for _, id := range []string{`5`, `"call-a"`} {
		code, ct, body := rawPost(t, g.url, cs.ID(), `{"jsonrpc":"2.0","id":`+id+`,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`)
		gotID, res, rpcErr := answerOf(t, body)
		if code != http.StatusOK || ct != "application/json" || rpcErr != nil || string(gotID) != id || textOf(t, res) != "local:hi" {
			t.Errorf("id %s: %d %s %q", id, code, ct, body)
		}
	}
	// With a progress token: the SDK path, an event stream, same answer.
	code, ct, body := rawPost(t, g.url, cs.ID(), `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"progressToken":"p"}}}`)
	if _, res, rpcErr := answerOf(t, body); code != http.StatusOK || ct != "text/event-stream" || rpcErr != nil || textOf(t, res) != "local:hi" {
		t.Errorf("SDK path: %d %s %q", code, ct, body)
	}
	// A tool error is the target's answer, passed on.
	_, _, body = rawPost(t, g.url, cs.ID(), `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"failing"}}`)
	if _, res, rpcErr := answerOf(t, body); rpcErr != nil || !strings.Contains(string(res), `"isError":true`) || !strings.Contains(textOf(t, res), "failed on purpose") {
		t.Errorf("tool error: %q", body)
	}
	// The access log and metrics see fast-path calls as they see others.
	// (The line follows the answer: the client does not wait for its write.)
	g.access.WaitFor(t, "method=tools/call target=local tool=echo")
	if m := scrape(t, g.Gateway); !strings.Contains(m, `tailgate_gateway_mcp_tool_call_duration_seconds_count{target="local",tool="echo"} 3`) {
		t.Errorf("metrics do not count the 3 echo calls:\n%s", m)
	}
}

// What the fast path does not serve goes to the SDK, which refuses it as
// before; nothing reaches a target that should not.
func TestFastPathFailsClosed(t *testing.T) {
	g := startGateway(t, authzConfig(`          - 'mcp.tool.name == "echo"'`))
	cs := connect(t, g.url, nil)
	call := func(name string) string {
		return `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"` + name + `","arguments":{"text":"x"}}}`
	}
	for _, tc := range []struct {
		name    string
		session string
		body    string
		hdr     []string
		status  int
		want    string // in the body
	}{
		{"unknown session", "no-such-session", call("echo"), nil, http.StatusNotFound, "session not found"},
		{"denied tool", cs.ID(), call("pid"), nil, http.StatusOK, `denied by mcpAuthorization`},
		{"unlisted tool", cs.ID(), call("nope"), nil, http.StatusOK, `denied by mcpAuthorization`},
		{"truncated JSON", cs.ID(), `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"`, nil, http.StatusBadRequest, "malformed"},
		{"batch", cs.ID(), "[" + call("echo") + "]", nil, http.StatusBadRequest, "batching is not supported"},
		{"no params", cs.ID(), `{"jsonrpc":"2.0","id":3,"method":"tools/call"}`, nil, http.StatusBadRequest, `missing required "params"`},
		{"name not a string", cs.ID(), `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":5}}`, nil, http.StatusOK, "invalid params"},
		{"wrong jsonrpc version", cs.ID(), `{"jsonrpc":"1.0","id":3,"method":"tools/call","params":{"name":"echo"}}`, nil, http.StatusBadRequest, ""},
		{"null id", cs.ID(), `{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo"}}`, nil, http.StatusBadRequest, ""},
		{"wrong content type", cs.ID(), call("echo"), []string{"Content-Type", "text/plain"}, http.StatusUnsupportedMediaType, ""},
		{"JSON only accepted", cs.ID(), call("echo"), []string{"Accept", "application/json"}, http.StatusBadRequest, ""},
		{"keys in another case", cs.ID(), `{"JSONRPC":"2.0","ID":3,"METHOD":"tools/call","PARAMS":{"name":"echo"}}`, nil, 0, ""},
		{"nested deeper than the SDK allows", cs.ID(), `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"a":` +
			strings.Repeat("[", 1001) + strings.Repeat("]", 1001) + `}}}`, nil, http.StatusBadRequest, ""},
		{"answer to an unknown relayed request", cs.ID(), `{"jsonrpc":"2.0","id":"tailgate-fast-999","result":{}}`, nil, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := rawPost(t, g.url, tc.session, tc.body, tc.hdr...)
			if tc.status != 0 && code != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %q, want %d with %q", code, body, tc.status, tc.want)
			}
			if code == http.StatusOK {
				if _, _, rpcErr := answerOf(t, body); rpcErr == nil {
					t.Fatalf("answered without an error: %q", body)
				}
			}
		})
	}
	if got := callText(t, cs, "echo", map[string]any{"text": "still"}); got != "local:still" {
		t.Errorf("the session after bad input: %q", got)
	}
	// The line follows the answer (the client does not wait for its write).
	g.access.WaitFor(t, "method=tools/call target=local tool=pid verdict=denied")
}

// A target asking the client for sampling during a call: the request and
// the client's answer pass through the call's own response stream.
func TestSamplingDuringACallReachesTheClient(t *testing.T) {
	g := startGateway(t, federationConfig("conditional", stdioTarget("local", "")))
	c := sdk.NewClient(&sdk.Implementation{Name: "sampler", Version: "1"}, &sdk.ClientOptions{
		CreateMessageHandler: func(_ context.Context, req *sdk.CreateMessageRequest) (*sdk.CreateMessageResult, error) {
			q := req.Params.Messages[0].Content.(*sdk.TextContent).Text
			return &sdk.CreateMessageResult{Model: "m", Role: "assistant", Content: &sdk.TextContent{Text: "answer to " + q}}, nil
		},
	})
	tee := &teeBodies{}
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: g.url, MaxRetries: -1, DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: tee}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	for i := range 3 {
		q := fmt.Sprintf("q%d", i)
		if got := callText(t, cs, "sample", map[string]any{"text": q}); got != "answer to "+q {
			t.Errorf("sample %d: %q", i, got)
		}
	}
	// The fast path relayed it, under an id of its own.
	if got := tee.String(); !strings.Contains(got, `"id":"tailgate-fast-`) || !strings.Contains(got, `"method":"sampling/createMessage"`) {
		t.Errorf("the sampling requests did not come by the fast path; the client read:\n%s", got)
	}
}

// teeBodies is a client transport that keeps a copy of every response
// body read (Write and String are testlog.Buffer's).
type teeBodies struct {
	testlog.Buffer
}

func (tb *teeBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(resp.Body, tb), resp.Body}
	}
	return resp, err
}

// A session used only through fast-path calls is not idle: the gateway
// keeps the idle timeout, and every call counts.
func TestFastPathCallsKeepTheSessionAlive(t *testing.T) {
	b, err := mcp.New(mcp.Options{
		Targets:        []mcp.Target{{Name: "remote", HTTP: httpTarget(t, "remote")}},
		SessionIdleTTL: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	cs := connect(t, srv.URL+"/mcp", nil)
	for i := range 10 {
		code, ct, body := rawPost(t, srv.URL+"/mcp", cs.ID(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`)
		if code != http.StatusOK || ct != "application/json" {
			t.Fatalf("call %d, %v into the session: %d %s %q", i, time.Duration(i)*100*time.Millisecond, code, ct, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Unused, it ends.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, _ := rawPost(t, srv.URL+"/mcp", cs.ID(), `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
		if code == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the idle session still answers (%d)", code)
		}
		time.Sleep(time.Second)
	}
}

// A fast-path call in flight: a second request with its id is refused as
// the SDK refuses one, and the client's notifications/cancelled (its
// HTTP request still open) reaches the target.
func TestFastPathCallInFlightDuplicateAndCancelled(t *testing.T) {
	g := startGateway(t, federationConfig("conditional", stdioTarget("local", "")))
	cs := connect(t, g.url, nil)
	mark := filepath.Join(t.TempDir(), "mark")
	block := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"block","arguments":{"mark":` + strconv.Quote(mark) + `}}}`
	done := make(chan string, 1)
	go func() {
		_, _, body := rawPost(t, g.url, cs.ID(), block)
		done <- body
	}()
	waitFor(t, "the call to reach the target", func() bool {
		_, err := os.Stat(mark + ".started")
		return err == nil
	})
	if code, _, body := rawPost(t, g.url, cs.ID(), block); code != http.StatusBadRequest || !strings.Contains(body, "duplicate in-flight request ID 9") {
		t.Errorf("the same id again: %d %q", code, body)
	}
	if code, _, body := rawPost(t, g.url, cs.ID(), `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9,"reason":"test"}}`); code != http.StatusAccepted {
		t.Errorf("notifications/cancelled: %d %q", code, body)
	}
	waitFor(t, "the target to see the cancellation", func() bool {
		b, _ := os.ReadFile(mark)
		return string(b) == "cancelled"
	})
	if body := <-done; strings.Contains(body, `"result"`) {
		t.Errorf("a cancelled call has a result: %q", body)
	}
	if got := callText(t, cs, "echo", map[string]any{"text": "after"}); got != "local:after" {
		t.Errorf("echo after the cancellation: %q", got)
	}
}
