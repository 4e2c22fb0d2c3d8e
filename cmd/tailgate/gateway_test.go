package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

func TestGatewayValidateOnlyNamesTheBadLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("binds:\n- port: 3000\n  listners: []\n"), 0o644)
	p := startTailgate(t, nil, "gateway", "-f", bad, "--validate-only")
	if code := p.wait(t, 30*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, p.output())
	}
	if out := p.output(); !strings.Contains(out, "bad.yaml:3") || !strings.Contains(out, "listners") {
		t.Errorf("error does not name the file, line and key:\n%s", out)
	}
	p = startTailgate(t, nil, "gateway", "--validate-only")
	if code := p.wait(t, 30*time.Second); code != 2 {
		t.Errorf("missing -f: exit %d, want 2", code)
	}
}

func TestGatewayServesAndStopsOnSIGTERM(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "from backend") }))
	defer backend.Close()
	port, err := netListenFree()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(`binds:
- port: `+port+`
  listeners:
  - name: default
    protocol: HTTP
    routes:
    - name: app
      backends:
      - host: `+strings.TrimPrefix(backend.URL, "http://")+`
`), 0o644)
	// With the fast front (the default) and without it.
	for _, extra := range [][]string{nil, {"--fast-front=false"}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		args := append([]string{"gateway", "-f", cfg, "--bind-host", "127.0.0.1", "--admin", "off"}, extra...)
		p := startTailgate(t, nil, args...)
		p.waitLine(t, ctx, `bind=bind/`+port)
		_, b := testhttp.Get(t, nil, "http://127.0.0.1:"+port+"/")
		if string(b) != "from backend" {
			t.Errorf("%v: through the gateway: %q", extra, b)
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("%v: exit %d after SIGTERM:\n%s", extra, code, p.output())
		}
		// Access lines to stderr are batched; stopping writes them.
		if out := p.output(); !strings.Contains(out, "msg=request") || !strings.Contains(out, "path=/ status=200") {
			t.Errorf("%v: the request's access line is not in the output after SIGTERM:\n%s", extra, out)
		}
	}
}
