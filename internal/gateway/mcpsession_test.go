package gateway

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// config.mcp.sessionTtl closes an MCP session nobody uses; its id is then
// unknown (404) and the client starts a new one.
func TestMCPSessionTTLClosesIdleSessions(t *testing.T) {
	api, _ := petsAPI(t)
	g, cs := startOpenAPIGateway(t, api, "config:\n  mcp:\n    sessionTtl: 1s")
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	id := cs.ID()
	for deadline := time.Now().Add(15 * time.Second); ; {
		req, _ := http.NewRequest(http.MethodPost, g.url("/mcp"), strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", id)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		st, _, _ := do(t, req)
		if st == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s still answers %d after 15s idle with sessionTtl 1s", id, st)
		}
		time.Sleep(1500 * time.Millisecond) // longer than the TTL: this poll must not keep it alive
	}
}

func TestMCPSessionTTLBadInputNamesPathAndLine(t *testing.T) {
	dir := t.TempDir()
	for ttl, want := range map[string]string{
		"soon":        `2:8: config.mcp.sessionTtl: expected a positive duration like 500ms, 10s or 1m, got "soon"`,
		"[1m]":        `2:21: config.mcp.sessionTtl: expected a string, got a list`,
		"1m, idle: 2": `2:25: config.mcp.idle: unknown key`,
	} {
		path := filepath.Join(dir, "c.yaml")
		cfg := "config:\n  mcp: {sessionTtl: " + ttl + "}\n" + simpleConfig(3000, "127.0.0.1:1", "", "")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Validate(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("sessionTtl %s: error %v, want one with %q", ttl, err, want)
		}
	}
}
