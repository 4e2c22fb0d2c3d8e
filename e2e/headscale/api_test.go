package headscale_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

// TestAPIConnectsAHeadscaleTailnet drives the REST API as an admin would:
// connect with {"control": {"type": "headscale", "url": ...}} and a
// headscale API key, verify, read the status, disconnect. The API key is
// in no answer, no log line and no database byte.
func TestAPIConnectsAHeadscaleTailnet(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.svc.Logger = log
	srv := httptest.NewServer(api.New(api.Options{Store: f.st, PrivateNetwork: f.svc, Logger: log}))
	defer srv.Close()
	admin, _, err := f.st.CreateAPIToken(ctx, f.org, "admin", store.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	var answers []string
	call := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, r)
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		resp, b := testhttp.Do(t, nil, req)
		answers = append(answers, string(b))
		var out map[string]any
		json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	control := map[string]string{"type": "headscale", "url": f.hs.URL}

	if code, out := call("POST", "/v1/environments", map[string]string{"name": "staging"}); code != 201 && code != 200 {
		t.Fatalf("create environment: %d %v", code, out)
	}
	// A bad control is a clear 400 and writes nothing.
	if code, out := call("PUT", "/v1/environments/staging/private-network", map[string]any{
		"api_token": f.hs.APIKey, "targets": []string{app1080.String()}, "control": map[string]string{"type": "headscale", "url": "not a url"},
	}); code != 400 {
		t.Fatalf("bad control URL: %d %v", code, out)
	}
	code, out := call("PUT", "/v1/environments/staging/private-network", map[string]any{
		"api_token": f.hs.APIKey, "targets": []string{app1080.String()}, "control": control,
	})
	if code != 200 {
		t.Fatalf("connect: %d %v", code, out)
	}
	if code, out := call("POST", "/v1/environments/staging/private-network/verify", nil); code != 200 || out["ok"] != true {
		t.Fatalf("verify: %d %v", code, out)
	}
	if code, out := call("GET", "/v1/environments/staging/private-network", nil); code != 200 || out["state"] != "verified" {
		t.Fatalf("status: %d %v", code, out)
	}
	if code, out := call("DELETE", "/v1/environments/staging/private-network", map[string]string{"api_token": f.hs.APIKey}); code != 200 && code != 204 {
		t.Fatalf("disconnect: %d %v", code, out)
	}
	p, _ := f.hs.Admin().Policy(ctx)
	if strings.Contains(string(p.HuJSON), "tailgate-staging") {
		t.Errorf("policy after disconnect through the API:\n%s", p.HuJSON)
	}

	places := map[string]string{"answers": strings.Join(answers, "\n"), "logs": logs.String()}
	files, _ := filepath.Glob(filepath.Join(f.dir, "tailgate.db*"))
	for _, file := range files {
		b, _ := os.ReadFile(file)
		places[filepath.Base(file)] = string(b)
	}
	for where, text := range places {
		if strings.Contains(text, f.hs.APIKey) {
			t.Errorf("the headscale API key is in the %s", where)
		}
	}
}
