package mcp_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tailgate-dev/tailgate/internal/gateway/mcp"
)

// setHeader is a client transport that sends every request with one
// header set: the caller's name, or its bearer token.
type setHeader struct{ name, value string }

func (h setHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return http.DefaultTransport.RoundTrip(r)
}

// An Mcp-Session-Id is bound to the caller that opened the session:
// another caller presenting it is refused, and the owner keeps using it.
func TestSessionIDIsBoundToItsCaller(t *testing.T) {
	b, err := mcp.New(mcp.Options{
		Targets:   []mcp.Target{{Name: "remote", HTTP: httpTarget(t, "remote")}},
		Principal: func(r *http.Request) string { return r.Header.Get("X-Test-Caller") },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)

	alice := connect(t, srv.URL+"/mcp", &http.Client{Transport: setHeader{"X-Test-Caller", "alice"}})
	if got := callText(t, alice, "echo", map[string]any{"text": "a"}); got != "remote:a" {
		t.Fatalf("alice: %q", got)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/mcp", bytes.NewReader([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", alice.ID())
	req.Header.Set("X-Test-Caller", "mallory")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "belongs to another caller") {
		t.Errorf("another caller with alice's session id: %d %s", resp.StatusCode, body)
	}
	if got := callText(t, alice, "echo", map[string]any{"text": "b"}); got != "remote:b" {
		t.Errorf("alice after the attempt: %q", got)
	}
	// After Close, requests are refused and the targets are stopped.
	b.Close()
	if _, err := alice.CallTool(context.Background(), &sdk.CallToolParams{Name: "echo"}); err == nil {
		t.Error("a closed backend still answered")
	}
}
