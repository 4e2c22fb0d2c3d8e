package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

// namedBackend answers with its name and what it saw.
func namedBackend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s host=%s x-gw=%s", name, r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Gw"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestGatewayFormServesLikeBinds runs a config in agentgateway's
// top-level form (gateways:, routes:, named backends:) next to its
// binds-form twin and sends both the same requests: every answer must be
// the same, and the answers must be the ones the config asks for.
func TestGatewayFormServesLikeBinds(t *testing.T) {
	a, b := namedBackend(t, "A"), namedBackend(t, "B")
	const auth = `authorization: {rules: ['request.headers["x-key"] == "k"']}`
	topLevel := func(p1, p2 int) string {
		return fmt.Sprintf(`gateways:
  default:
    port: %d
  web:
    port: %d
    listeners:
    - name: api
      hostname: api.example.com
      %s
    - hostname: "*"
backends:
- name: echo-a
  host: %s
routes:
- name: a
  matches: [{path: {pathPrefix: /a}}]
  backends: [{backend: echo-a}]
- name: api
  gateways: web/api
  matches: [{path: {pathPrefix: /api}}]
  policies: {requestHeaderModifier: {set: {x-gw: api}}}
  backends: [{backend: echo-a}]
- name: b
  gateways: [web]
  matches: [{path: {pathPrefix: /b}}]
  backends: [{host: %s}]
`, p1, p2, auth, hostOf(a), hostOf(b))
	}
	binds := func(p1, p2 int) string {
		return fmt.Sprintf(`binds:
- port: %[1]d
  listeners:
  - name: default
    routes:
    - name: a
      matches: [{path: {pathPrefix: /a}}]
      backends: [{host: %[3]s}]
- port: %[2]d
  listeners:
  - name: web/api
    hostname: api.example.com
    policies: {%[4]s}
    routes:
    - name: api
      matches: [{path: {pathPrefix: /api}}]
      policies: {requestHeaderModifier: {set: {x-gw: api}}}
      backends: [{host: %[3]s}]
    - name: b
      matches: [{path: {pathPrefix: /b}}]
      backends: [{host: %[5]s}]
  - name: web/listener1
    routes:
    - name: b
      matches: [{path: {pathPrefix: /b}}]
      backends: [{host: %[5]s}]
`, p1, p2, hostOf(a), auth, hostOf(b))
	}
	start := func(cfg func(int, int) string) (*testGateway, int) {
		p1, p2 := freePort(t), freePort(t)
		return startGateway(t, cfg(p1, p2), p1), p2
	}
	tg, tp2 := start(topLevel)
	bg, bp2 := start(binds)
	type req struct {
		second bool // the web gateway's port
		host   string
		path   string
		key    string
		status int
		body   string // the answer starts with it
	}
	reqs := []req{
		{false, "x.example", "/a/1", "", 200, "A GET /a/1 host=x.example x-gw="},
		{false, "x.example", "/b/1", "", 404, ""},
		{true, "api.example.com", "/api/v1", "k", 200, "A GET /api/v1 host=api.example.com x-gw=api"},
		{true, "api.example.com", "/api/v1", "", 403, ""},
		{true, "api.example.com", "/b/2", "k", 200, "B GET /b/2"},
		{true, "other.example", "/b/3", "", 200, "B GET /b/3 host=other.example"},
		{true, "other.example", "/api/v1", "", 404, ""},
		{true, "other.example", "/a/1", "", 404, ""},
	}
	for _, r := range reqs {
		var answers [2]string
		for i, g := range []struct {
			gw *testGateway
			p2 int
		}{{tg, tp2}, {bg, bp2}} {
			url := g.gw.url(r.path)
			if r.second {
				url = fmt.Sprintf("http://127.0.0.1:%d%s", g.p2, r.path)
			}
			hdr := []string{"Host", r.host}
			if r.key != "" {
				hdr = append(hdr, "X-Key", r.key)
			}
			status, body, _ := get(t, url, hdr...)
			answers[i] = fmt.Sprintf("%d %s", status, body)
			if status != r.status || !strings.HasPrefix(body, r.body) {
				t.Errorf("%s%s (form %d): got %d %q, want %d %q...", r.host, r.path, i, status, body, r.status, r.body)
			}
		}
		if answers[0] != answers[1] {
			t.Errorf("%s%s: top-level form answered %q, binds form %q", r.host, r.path, answers[0], answers[1])
		}
	}
}

// TestAgentgatewayGatewayFormLoads loads agentgateway's own test configs
// for the top-level form and for a named MCP backend.
func TestAgentgatewayGatewayFormLoads(t *testing.T) {
	dir, err := filepath.Abs("testdata/agentgateway")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, f := range []string{"gateway_config.yaml", "named_mcp_backend_config.yaml"} {
		if err := Validate(filepath.Join("crates/agentgateway/src/types/local_tests", f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestGatewayFormHTTPS serves a gateway whose tls makes it HTTPS (no
// protocol written, as agentgateway defaults it), through a named
// backend, and refuses plain HTTP on its port.
func TestGatewayFormHTTPS(t *testing.T) {
	a := namedBackend(t, "A")
	cert, key := writeSelfSigned(t, t.TempDir(), "api.example.com")
	port := freePort(t)
	cfg := fmt.Sprintf(`gateways:
  secure:
    port: %d
    tls: {cert: %s, key: %s}
backends:
- name: a
  host: %s
routes:
- gateways: secure
  backends: [{backend: a}]
`, port, cert, key, hostOf(a))
	startGateway(t, cfg, port)
	resp, body := testhttp.Get(t, tlsClient(t, cert), fmt.Sprintf("https://api.example.com:%d/x", port))
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "A GET /x host=api.example.com") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if resp, err := testClient.Get(fmt.Sprintf("http://127.0.0.1:%d/x", port)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP reached the backend on an HTTPS gateway")
		}
	}
}

// TestGatewayFormSharedMCPBackend: one named MCP backend, referenced by
// routes on two gateways, serves its tools on both.
func TestGatewayFormSharedMCPBackend(t *testing.T) {
	target := mcpToolsServer(t)
	p1, p2 := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`gateways:
  one: {port: %d}
  two: {port: %d}
backends:
- name: tools
  mcp:
    targets:
    - name: tools
      mcp: {host: %s}
routes:
- name: mcp
  gateways: [one, two]
  matches: [{path: {exact: /mcp}}]
  backends: [{backend: tools}]
`, p1, p2, target)
	startGateway(t, cfg, p1)
	for _, port := range []int{p1, p2} {
		if got := toolNames(t, fmt.Sprintf("http://127.0.0.1:%d/mcp", port)); got != "add,echo" {
			t.Errorf("port %d: tools %s, want add,echo", port, got)
		}
	}
}

// toolNames lists the tools at an MCP endpoint, sorted, comma-separated.
func toolNames(t *testing.T, url string) string {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "gateway-form-test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: url, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	defer cs.Close()
	return sessionToolNames(t, cs)
}

// sessionToolNames lists the tools an MCP session sees, sorted,
// comma-separated.
func sessionToolNames(t *testing.T, cs *sdk.ClientSession) string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// TestGatewayFormMCPBlockOnDefaultGateway is agentgateway's unified
// gateway shape: with a gateway named default and no mcp.port, the mcp:
// block is served on that gateway at /mcp, next to the other routes
// (mcp.gateways names other gateways the same way).
func TestGatewayFormMCPBlockOnDefaultGateway(t *testing.T) {
	a := namedBackend(t, "A")
	port := freePort(t)
	cfg := fmt.Sprintf(`gateways:
  default: {port: %d}
routes:
- backends: [{host: %s}]
mcp:
  targets:
  - name: tools
    mcp: {host: %s}
`, port, hostOf(a), mcpToolsServer(t))
	g := startGateway(t, cfg, port)
	if got := toolNames(t, g.url("/mcp")); got != "add,echo" {
		t.Errorf("tools %s, want add,echo", got)
	}
	if status, body, _ := get(t, g.url("/api"), "Host", "x.example"); status != 200 || !strings.HasPrefix(body, "A GET /api") {
		t.Errorf("/api: %d %q", status, body)
	}
}

// TestGatewayFormRouteErrorsOnce: a route on a gateway with two
// listeners is compiled for each, but its bad rule is reported once,
// where it was written.
func TestGatewayFormRouteErrorsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, []byte(`gateways:
  web:
    port: 8080
    listeners:
    - name: a
      hostname: a.example.com
    - name: b
routes:
- gateways: web
  policies:
    authorization: {rules: ['request.nope == 1']}
  backends: [{host: "127.0.0.1:1"}]
`))
	err := Validate(path)
	if err == nil {
		t.Fatal("a bad rule loaded")
	}
	if n := strings.Count(err.Error(), "routes[0].policies.authorization.rules[0]"); n != 1 {
		t.Errorf("the bad rule is reported %d times, want once:\n%v", n, err)
	}
}
