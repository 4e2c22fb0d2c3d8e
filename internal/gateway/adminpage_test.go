package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// adminSecrets are in adminPageConfig; no byte of them may reach a page.
var adminSecrets = []string{
	"sk-backendauth-7Q2xV", // backendAuth key
	"EXTAUTHZ-9f3kLm",      // extAuthz token in a credential header
	"authz-token-Zq81",     // extAuthz token in a header named like one
	"hunter2",              // JWKS URL userinfo
	"jwks-token-abc",       // JWKS URL query
}

// signingKeyPEM is a jwtSign key made for this test run; no line of its
// body may reach a page either.
var signingKeyPEM = func() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}()

const xssRoute = `<script>alert("route")</script>`

// adminPageConfig is one bind with a route per kind of secret, a route
// whose name is an XSS attempt, and an MCP route with one HTTP target.
func adminPageConfig(port int, backend, authz, mcpURL string) string {
	return fmt.Sprintf(`binds:
- port: %d
  listeners:
  - name: default
    protocol: HTTP
    policies:
      cors: {allowOrigins: ["https://app.example.com"]}
    routes:
    - name: app
      matches: [{path: {pathPrefix: /app}}]
      policies:
        jwtAuth:
          mode: optional
          issuer: https://idp.example.com
          jwks: {url: "https://user:hunter2@idp.example.com/jwks?token=jwks-token-abc"}
        authorization:
          rules: ['request.path != "/app/forbidden"']
        requestHeaderModifier: {set: {x-gw: ok}}
      backends: [{host: %s}]
    - name: checked
      matches: [{path: {pathPrefix: /checked}, headers: [{name: x-env, value: {exact: prod}}]}]
      policies:
        extAuthz:
          host: %s
          protocol:
            http:
              addRequestHeaders:
                authorization: '"Bearer EXTAUTHZ-9f3kLm"'
                x-authz-token: '"authz-token-Zq81"'
      backends: [{host: %s}]
    - name: keyed
      matches: [{path: {pathPrefix: /keyed}}]
      policies:
        backendAuth: {key: sk-backendauth-7Q2xV}
        timeout: {requestTimeout: 5s}
      backends: [{host: %s}]
    - name: signed
      matches: [{path: {pathPrefix: /signed}}]
      policies:
        backendAuth:
          jwtSign:
            signingKey: |
%s
            alg: ES256
      backends: [{host: %s}]
    - name: '%s'
      matches: [{path: {exact: /xss}}]
      backends: [{host: %s}]
    - name: tools
      matches: [{path: {pathPrefix: /mcp}}]
      policies:
        mcpAuthorization:
          rules: ['true']
      backends:
      - mcp:
          targets:
          - name: everything
            mcp: {host: %q}
`, port, backend, authz, backend, backend, indent(signingKeyPEM, "              "), backend, xssRoute, backend, mcpURL)
}

// mcpToolsTarget is a streamable HTTP MCP server with two tools.
func mcpToolsTarget(t *testing.T) string {
	s := sdk.NewServer(&sdk.Implementation{Name: "everything", Version: "1"}, nil)
	type args struct {
		Text string `json:"text"`
	}
	for _, name := range []string{"echo", "add"} {
		sdk.AddTool(s, &sdk.Tool{Name: name, Description: name + " for the admin page test"}, func(ctx context.Context, _ *sdk.CallToolRequest, a args) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: a.Text}}}, nil, nil
		})
	}
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

func startAdminPageGateway(t *testing.T) *testGateway {
	t.Helper()
	be := echoBackend(t)
	authz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(authz.Close)
	port := freePort(t)
	return startGateway(t, adminPageConfig(port, hostOf(be), hostOf(authz), mcpToolsTarget(t)), port)
}

// listToolsThrough lists tools as an MCP client of the gateway's route.
func listToolsThrough(t *testing.T, url string) {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "admin-test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: url, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

var totalRe = regexp.MustCompile(`<strong class="total">(\d+)</strong>`)

func pageTotal(t *testing.T, body string) string {
	t.Helper()
	m := totalRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no request total on the page:\n%s", body)
	}
	return m[1]
}

func TestAdminPageShowsRoutesPoliciesToolsAndCounts(t *testing.T) {
	g := startAdminPageGateway(t)
	admin := "http://" + g.AdminAddr()

	code, page, h := get(t, admin+"/ui")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui: %d %s", code, h.Get("Content-Type"))
	}
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"frame-ancestors 'none'", "script-src 'self'", "default-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers: CSP %q, X-Frame-Options %q, X-Content-Type-Options %q", csp, h.Get("X-Frame-Options"), h.Get("X-Content-Type-Options"))
	}
	if n := strings.Count(page, "<script"); n != 1 || !strings.Contains(page, `<script src="/ui/static/admin.js" defer></script>`) {
		t.Errorf("want exactly one script, the page's own file; found %d", n)
	}
	if strings.Contains(page, " style=") || strings.Contains(page, "<style") {
		t.Error("inline style on the page")
	}

	for _, want := range []string{
		// every route, its matches and backends
		"<code>app</code>", "<code>checked</code>", "<code>keyed</code>", "<code>signed</code>", "<code>tools</code>",
		"path prefix /app", "header X-Env = prod", "path = /xss",
		// every policy: listener's, then each route's in the order they apply
		`<span class="badge">cors</span>`,
		`<span class="badge">jwtAuth</span> <span class="badge">authorization</span> <span class="badge">requestHeaderModifier</span>`,
		`<span class="badge">extAuthz</span>`, `<span class="badge">backendAuth</span> <span class="badge">timeout</span>`,
		`<span class="badge">mcpAuthorization</span>`,
		// the policies' own config, redacted
		"x-gw: ok", "issuer: https://idp.example.com",
		// the MCP target, before any client listed tools
		"Target <code>everything</code>", "Tools not listed yet",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	assertNoSecrets(t, "page", page)

	// The XSS attempt in a route name is text everywhere it appears.
	if strings.Contains(page, "<script>alert") || !strings.Contains(page, "&lt;script&gt;alert(&#34;route&#34;)&lt;/script&gt;") {
		t.Errorf("route name not escaped")
	}

	// Requests raise the counts, per route and in all.
	before := pageTotal(t, page)
	get(t, g.url("/app/x"))
	get(t, g.url("/app/forbidden"))
	get(t, g.url("/xss"))
	listToolsThrough(t, g.url("/mcp"))
	code, counts, ch := get(t, admin+"/ui/counts")
	if code != 200 || ch.Get("Content-Security-Policy") == "" {
		t.Fatalf("GET /ui/counts: %d, CSP %q", code, ch.Get("Content-Security-Policy"))
	}
	if after := pageTotal(t, counts); after == before {
		t.Errorf("total stayed %s after requests", after)
	}
	for _, want := range []string{
		`<code>default/app</code></th><td class="num">2</td><td>200 × 1, 403 × 1</td>`,
		`<code>default/&lt;script&gt;alert(&#34;route&#34;)&lt;/script&gt;</code></th><td class="num">1</td>`,
		`<code>default/tools</code>`,
	} {
		if !strings.Contains(counts, want) {
			t.Errorf("counts lack %s:\n%s", want, counts)
		}
	}

	// After a client listed tools, the page shows them and when.
	_, page, _ = get(t, admin+"/ui")
	for _, want := range []string{"Tools listed ", "<code>echo</code>", "<code>add</code>", "add for the admin page test"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s after tools/list", want)
		}
	}
	assertNoSecrets(t, "page after requests", page)

	// The JSON dump is redacted by the same helper.
	_, dump, _ := get(t, admin+"/config_dump")
	for _, secret := range adminSecrets {
		if strings.Contains(dump, secret) {
			t.Errorf("/config_dump shows secret %q", secret)
		}
	}
}

func assertNoSecrets(t *testing.T, where, body string) {
	t.Helper()
	secrets := adminSecrets
	for _, line := range strings.Split(signingKeyPEM, "\n") {
		if line != "" && !strings.HasPrefix(line, "-----") {
			secrets = append(secrets, line)
		}
	}
	for _, s := range secrets {
		if strings.Contains(body, s) {
			t.Errorf("%s shows secret %q", where, s)
		}
	}
	if !strings.Contains(body, "&lt;redacted&gt;") {
		t.Errorf("%s shows no redaction at all", where)
	}
}

func TestAdminPageIsReadOnlyAndRefusesRebinding(t *testing.T) {
	g := startAdminPageGateway(t)
	admin := "http://" + g.AdminAddr()
	req, _ := http.NewRequest(http.MethodPost, admin+"/ui", strings.NewReader("x=1"))
	if code, _, _ := do(t, req); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui: %d, want 405", code)
	}
	if code, _, _ := get(t, admin+"/ui", "Host", "admin.attacker.example"); code != http.StatusForbidden {
		t.Errorf("a rebound Host on the loopback admin address: %d, want 403", code)
	}
	if code, _, _ := get(t, admin+"/ui/static/"); code != 404 {
		t.Errorf("static directory listing: %d, want 404", code)
	}
	if code, css, h := get(t, admin+"/ui/static/admin.css"); code != 200 || !strings.Contains(css, ":root") || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("stylesheet: %d", code)
	}
}

// TestAdminPageInChromium loads the page in headless Chromium: its
// script runs under the CSP and refreshes the counts, the XSS route
// name stays text, and a phone-width window does not scroll sideways.
func TestAdminPageInChromium(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("headless Chromium is not installed at %s", chromium)
	}
	g := startAdminPageGateway(t)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(390, 844),
		chromedp.Flag("no-sandbox", os.Geteuid() == 0))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, time.Minute)
	defer cancelTimeout()

	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+g.AdminAddr()+"/"), chromedp.WaitVisible(chromedp.CSS("#counts"))); err != nil {
		t.Fatal(err)
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}
	// Read in one script, not by node: the page replaces the counts on
	// every refresh, and a node looked up before a refresh is gone after
	// it ("No node with given id found").
	total := func() string {
		t.Helper()
		return eval(`document.querySelector("#counts .total").textContent`)
	}
	before := total()
	if n := eval(`String(document.scripts.length)`); n != "1" {
		t.Errorf("%s scripts on the page, want 1", n)
	}
	if names := eval(`[...document.querySelectorAll("#routes th code")].map(e => e.textContent).join("\n")`); !strings.Contains(names, xssRoute) {
		t.Errorf("the XSS route name is not shown as text: %q", names)
	}
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`)); err != nil || wide {
		t.Errorf("the page scrolls sideways at phone width (%v)", err)
	}
	get(t, g.url("/app/x"))
	get(t, g.url("/app/y"))
	after := before
	for deadline := time.Now().Add(3 * countsRefresh); after == before && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		after = total()
	}
	if after == before {
		t.Errorf("counts never refreshed: still %s", after)
	}
	if dir := os.Getenv("TAILGATE_GATEWAY_ADMIN_SHOTS"); dir != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "gateway-admin-phone.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
