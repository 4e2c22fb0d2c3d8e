package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

func TestSeedConfigRefusesLoopbackClientAtConnect(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), "", `
networkAuthorization:
  rules:
  - allow: 'cidr("100.64.0.0/10").containsIP(source.address)'`), port)

	if !connectionRefused(t, port) {
		t.Fatal("a loopback client was answered; want the connection closed without a response")
	}
	log := g.access.WaitFor(t, "connection denied")
	for _, want := range []string{"policy=networkAuthorization", `reason="no allow rule matched"`, fmt.Sprintf("bind=bind/%d", port), "src=127.0.0.1:"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "msg=request") {
		t.Errorf("a refused connection must never reach HTTP:\n%s", log)
	}
}

func TestNetworkAuthorizationAdmitsMatchingClient(t *testing.T) {
	g := startBehindEcho(t, "", `
networkAuthorization:
  rules:
  - 'cidr("127.0.0.0/8").containsIP(source.address)'
  - deny: 'source.port == 0'`)
	code, body, hdr := get(t, g.url("/hello?x=1"))
	if code != 200 || !strings.HasPrefix(body, "GET /hello?x=1") || hdr.Get("X-Backend") != "echo" {
		t.Fatalf("got %d %q", code, body)
	}
	log := g.access.WaitFor(t, "msg=request")
	for _, want := range []string{"bind=bind/", "route=default/app", "status=200", "method=GET", "path=/hello", "backend=127.0.0.1:"} {
		if !strings.Contains(log, want) {
			t.Errorf("access log lacks %q:\n%s", want, log)
		}
	}
}

func TestStartLogsEachBindLikeAgentgateway(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), "", ""), port)
	want := fmt.Sprintf(`msg="started bind" bind=bind/%d`, port)
	if !strings.Contains(g.ops.String(), want) {
		t.Fatalf("ops log lacks %q:\n%s", want, g.ops.String())
	}
}

func TestRouteMatching(t *testing.T) {
	be := echoBackend(t)
	other := httptestText(t, "other")
	port := freePort(t)
	cfg := fmt.Sprintf(`
binds:
- port: %d
  listeners:
  - protocol: HTTP
    routes:
    - name: fallback
      backends: [{host: %q}]
    - name: api
      matches:
      - path: {pathPrefix: /api}
        method: POST
      - path: {exact: /exact}
      - path: {regex: "/v[0-9]+/items"}
      - path: {pathPrefix: /h}
        headers: [{name: X-Env, value: {exact: prod}}]
      - path: {pathPrefix: /q}
        query: [{name: debug, value: {regex: "1|true"}}]
      backends: [{host: %q}]
    - name: hosted
      hostnames: ["*.example.com"]
      matches: [{path: {pathPrefix: /site}}]
      backends: [{host: %q}]
`, port, hostOf(other), hostOf(be), hostOf(be))
	g := startGateway(t, cfg, port)
	post := func(path string) string {
		req, _ := http.NewRequest("POST", g.url(path), strings.NewReader("x"))
		_, body, _ := do(t, req)
		return body
	}
	for _, tc := range []struct {
		name, got, want string
	}{
		{"prefix+method", post("/api/x"), "POST /api/x"},
		{"prefix needs method", body(t, g.url("/api/x")), "other"},
		{"prefix is per segment", post("/apix"), "other"},
		{"exact", body(t, g.url("/exact")), "GET /exact"},
		{"exact is exact", body(t, g.url("/exact/no")), "other"},
		{"regex", body(t, g.url("/v2/items")), "GET /v2/items"},
		{"regex is anchored", body(t, g.url("/x/v2/items")), "other"},
		{"header", body(t, g.url("/h"), "X-Env", "prod"), "GET /h"},
		{"header mismatch", body(t, g.url("/h"), "X-Env", "dev"), "other"},
		{"query", body(t, g.url("/q?debug=true")), "GET /q?debug=true"},
		{"query mismatch", body(t, g.url("/q?debug=no")), "other"},
		{"route hostname", body(t, g.url("/site"), "Host", "a.example.com"), "GET /site"},
		{"route hostname mismatch", body(t, g.url("/site"), "Host", "example.org"), "other"},
	} {
		if !strings.HasPrefix(tc.got, tc.want) {
			t.Errorf("%s: got %q, want prefix %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestNoRouteIs404(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	g := startGateway(t, fmt.Sprintf(`
binds:
- port: %d
  listeners:
  - hostname: app.example.com
    routes:
    - matches: [{path: {exact: /only}}]
      backends: [{host: %q}]
`, port, hostOf(be)), port)
	if code, _, _ := get(t, g.url("/other"), "Host", "app.example.com"); code != 404 {
		t.Errorf("unmatched path: %d, want 404", code)
	}
	if code, _, _ := get(t, g.url("/only"), "Host", "other.example.com"); code != 404 {
		t.Errorf("unmatched listener hostname: %d, want 404", code)
	}
	if code, _, _ := get(t, g.url("/only"), "Host", "app.example.com:8080"); code != 200 {
		t.Errorf("matching host with port: %d, want 200", code)
	}
}

func httptestText(t *testing.T, text string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, text) }))
	t.Cleanup(srv.Close)
	return srv
}

func body(t *testing.T, url string, hdr ...string) string {
	t.Helper()
	_, b, _ := get(t, url, hdr...)
	return b
}

func TestBackendDownIs502WithReasonInLog(t *testing.T) {
	port, dead := freePort(t), freePort(t)
	g := startGateway(t, simpleConfig(port, fmt.Sprintf("127.0.0.1:%d", dead), "", ""), port)
	if code, _, _ := get(t, g.url("/")); code != http.StatusBadGateway {
		t.Fatalf("code = %d, want 502", code)
	}
	g.access.WaitFor(t, "connection refused")
}

func TestValidateReportsProblemsWithLines(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ cfg, want string }{
		{`
frontendPolicies:
  networkAuthorization:
    rules:
    - allow: 'request.path == "/"'
binds: []
`, `config.yaml:5: frontendPolicies.networkAuthorization.rules[0]: rule "request.path == \"/\"": variable "request" is not available in the network phase`},
		{`
binds:
- port: 1
  listeners:
  - routes:
    - backends:
      - mcp: {targets: []}
`, `config.yaml:7:14: binds[0].listeners[0].routes[0].backends[0].mcp.targets: an mcp backend needs at least one target`},
		{`
binds:
- port: 1
  listeners:
  - routes:
    - backends: [{host: "localhost"}]
      policies:
        authorization: {rules: ['jwt.sub == "a" &&']}
        jwtAuth: {issuer: x, jwks: {file: missing.json}}
`, `a port is required`},
	} {
		path := dir + "/config.yaml"
		os.WriteFile(path, []byte(tc.cfg), 0o600)
		err := Validate(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate: %v\nwant it to contain %s", err, tc.want)
		}
	}
	// Every problem at once: the third file has three.
	err := Validate(dir + "/config.yaml")
	for _, want := range []string{"a port is required", "Syntax error", "missing.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q: %v", want, err)
		}
	}
}

func TestRunValidateOnlyDoesNotListen(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	path := t.TempDir() + "/c.yaml"
	os.WriteFile(path, []byte(simpleConfig(port, hostOf(be), "", "")), 0o600)
	if err := Run(t.Context(), Options{ConfigPath: path, ValidateOnly: true}); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		c.Close()
		t.Fatal("validate-only opened the bind")
	}
}

func TestHTTPSListener(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir, "gw.example.com")
	g := startGateway(t, fmt.Sprintf(`
binds:
- port: %d
  listeners:
  - protocol: HTTPS
    hostname: gw.example.com
    tls: {cert: %s, key: %s}
    routes:
    - backends: [{host: %q}]
`, port, certFile, keyFile, hostOf(be)), port)
	client := tlsClient(t, certFile)
	resp, b := testhttp.Get(t, client, fmt.Sprintf("https://gw.example.com:%d/secure", port))
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "GET /secure") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	_ = g
}

// TestAccessLogToAFileArrivesSoonAndAllOfItByClose: lines to a file are
// batched, but each is written within moments, and Close writes the rest.
func TestAccessLogToAFileArrivesSoonAndAllOfItByClose(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	f, err := os.CreateTemp(t.TempDir(), "access")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g := startGateway(t, simpleConfig(port, hostOf(be), "", ""), port, func(o *Options) { o.AccessLog = f })
	get(t, g.url("/first"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(f.Name())
		if strings.Contains(string(b), "path=/first") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the line for /first is not in the file after 5 s: %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 20; i++ {
		get(t, g.url(fmt.Sprintf("/n%d", i)))
	}
	g.Close()
	b, _ := os.ReadFile(f.Name())
	if n := strings.Count(string(b), "msg=request"); n != 21 {
		t.Fatalf("after Close the file has %d request lines; want 21", n)
	}
}
