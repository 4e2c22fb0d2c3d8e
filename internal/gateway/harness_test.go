package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/selfsigned"
	"github.com/tailgate-dev/tailgate/internal/testtcp"

	"github.com/tailgate-dev/tailgate/internal/testhttp"
	"github.com/tailgate-dev/tailgate/internal/testlog"
)

func freePort(t *testing.T) int { return testtcp.FreePort(t) }

// echoBackend answers with what it saw, so tests can check what the
// gateway forwarded.
func echoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "echo")
		fmt.Fprintf(w, "%s %s host=%s x-gw=%s x-user=%s cookie=%s", r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Gw"), r.Header.Get("X-User"), r.Header.Get("Cookie"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func hostOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

type testGateway struct {
	*Gateway
	path   string
	port   int
	access *testlog.Buffer
	ops    *testlog.Buffer
}

func (tg *testGateway) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", tg.port, path)
}

// startGateway writes cfg (with {{PORT}} and other placeholders already
// filled by the caller) and starts a gateway on loopback.
func startGateway(t *testing.T, cfg string, port int, mod ...func(*Options)) *testGateway {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	access, ops := &testlog.Buffer{}, &testlog.Buffer{}
	opts := Options{
		ConfigPath:     path,
		BindHost:       "127.0.0.1",
		AdminAddr:      "127.0.0.1:0",
		AccessLog:      access,
		Logger:         slog.New(slog.NewTextHandler(ops, nil)),
		ReloadInterval: -1,
	}
	for _, m := range mod {
		m(&opts)
	}
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return &testGateway{Gateway: g, path: path, port: port, access: access, ops: ops}
}

func get(t *testing.T, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

var testClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func do(t *testing.T, req *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, b := testhttp.Do(t, testClient, req)
	return resp.StatusCode, string(b), resp.Header
}

// simpleConfig is one HTTP bind with one route to backend, plus policies
// (YAML indented for a route's policies block) and frontend (YAML for
// frontendPolicies).
func simpleConfig(port int, backend, policies, frontend string) string {
	var b strings.Builder
	if frontend != "" {
		fmt.Fprintf(&b, "frontendPolicies:\n%s\n", indent(frontend, "  "))
	}
	fmt.Fprintf(&b, "binds:\n- port: %d\n  listeners:\n  - name: default\n    protocol: HTTP\n    routes:\n    - name: app\n", port)
	if policies != "" {
		fmt.Fprintf(&b, "      policies:\n%s\n", indent(policies, "        "))
	}
	fmt.Fprintf(&b, "      backends:\n      - host: %s\n", backend)
	return b.String()
}

func indent(s, pfx string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pfx + l
	}
	return strings.Join(lines, "\n")
}

// writeSelfSigned writes a self-signed cert for name and returns the
// cert and key file paths.
func writeSelfSigned(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	certFile, keyFile, err := selfsigned.WriteFiles(dir, "", name)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// tlsClient trusts certFile and dials every name on loopback.
func tlsClient(t *testing.T, certFile string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(b)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+port)
		},
	}}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startBehindEcho starts a gateway whose one route has policies (and
// frontendPolicies frontend; either may be "") in front of an echo
// backend.
func startBehindEcho(t *testing.T, policies, frontend string) *testGateway {
	t.Helper()
	be := echoBackend(t)
	port := freePort(t)
	return startGateway(t, simpleConfig(port, hostOf(be), policies, frontend), port)
}
