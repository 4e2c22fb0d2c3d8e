package gateway

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAccessLogAddsCELFieldsRemovesAndFilters(t *testing.T) {
	g := startBehindEcho(t, "", `accessLog:
  filter: 'request.path != "/quiet"'
  add:
    user.agent: 'request.headers["user-agent"]'
    status.class: 'string(response.code / 100) + "xx"'
    absent: 'jwt.sub'
  remove: [duration_ms]`)
	get(t, g.url("/quiet"))
	get(t, g.url("/loud"), "User-Agent", "probe/1")
	line := lineWith(g.access.WaitFor(t, "path=/loud"), "path=/loud")
	for _, want := range []string{"user.agent=probe/1", "status.class=2xx"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s: %s", want, line)
		}
	}
	for _, unwanted := range []string{"duration_ms=", "absent="} {
		if strings.Contains(line, unwanted) {
			t.Errorf("log line has %s: %s", unwanted, line)
		}
	}
	if strings.Contains(g.access.String(), "path=/quiet") {
		t.Error("the filter did not keep /quiet out of the log")
	}
}

func TestDirectResponseRedirectAndRewrite(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	cfg := fmt.Sprintf(`
binds:
- port: %d
  listeners:
  - routes:
    - name: direct
      matches: [{path: {pathPrefix: /direct}}]
      policies:
        directResponse: {status: 418, body: "hello!"}
    - name: abort
      matches: [{path: {pathPrefix: /abort}}]
      policies:
        directResponse:
          conditional:
          - condition: 'request.headers["x-chaos"] == "1"'
            status: 503
            body: injected fault
      backends: [{host: %[2]s}]
    - name: redirect
      matches: [{path: {pathPrefix: /old}}]
      policies:
        requestRedirect: {scheme: https, authority: {host: new.example}, path: {prefix: /new}, status: 301}
    - name: rewrite
      matches: [{path: {pathPrefix: /api/v1}}]
      policies:
        urlRewrite: {path: {prefix: /v2}, authority: {full: custom-host-header}}
        responseHeaderModifier: {set: {x-resp: added}}
      backends: [{host: %[2]s}]
    - name: full
      matches: [{path: {pathPrefix: /full}}]
      policies:
        urlRewrite: {path: {full: /new-path}}
      backends: [{host: %[2]s}]
`, port, hostOf(be))
	g := startGateway(t, cfg, port)

	if st, b, _ := get(t, g.url("/direct")); st != 418 || b != "hello!" {
		t.Errorf("directResponse: %d %q", st, b)
	}
	if st, b, _ := get(t, g.url("/abort"), "X-Chaos", "1"); st != 503 || b != "injected fault" {
		t.Errorf("abort: %d %q", st, b)
	}
	if st, b, _ := get(t, g.url("/abort")); st != 200 || !strings.HasPrefix(b, "GET /abort") {
		t.Errorf("no abort without the header: %d %q", st, b)
	}
	req, _ := http.NewRequest("GET", g.url("/old/page?x=1"), nil)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != 301 || loc != "https://new.example/new/page?x=1" {
		t.Errorf("redirect: %d %q", resp.StatusCode, loc)
	}
	st, b, h := get(t, g.url("/api/v1/users?id=7"))
	if st != 200 || !strings.HasPrefix(b, "GET /v2/users?id=7 host=custom-host-header") || h.Get("X-Resp") != "added" {
		t.Errorf("rewrite: %d %q x-resp=%q", st, b, h.Get("X-Resp"))
	}
	if _, b, _ := get(t, g.url("/full/x?q=1")); !strings.HasPrefix(b, "GET /new-path?q=1") {
		t.Errorf("full rewrite: %q", b)
	}
}

func TestRequestMirrorReceivesItsCopy(t *testing.T) {
	got := make(chan string, 4)
	m := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Method + " " + r.URL.RequestURI()
		w.WriteHeader(500) // the mirror's answer is ignored
	}))
	t.Cleanup(m.Close)
	g := startBehindEcho(t, fmt.Sprintf("requestMirror: {backend: {host: %s}, percentage: 1.0}", hostOf(m)), "")
	if st, b, _ := get(t, g.url("/copy?me=1")); st != 200 || !strings.HasPrefix(b, "GET /copy?me=1") {
		t.Fatalf("primary: %d %q", st, b)
	}
	select {
	case c := <-got:
		if c != "GET /copy?me=1" {
			t.Errorf("mirror got %q", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the mirror never received its copy")
	}
}

func TestDelayDelaysOnlyWhenTheExpressionSaysSo(t *testing.T) {
	g := startBehindEcho(t, `delay: {duration: 'request.headers["x-chaos"] == "1" ? 400 : 0'}`, "")
	start := time.Now()
	get(t, g.url("/"), "X-Chaos", "1")
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("delayed request took %v", d)
	}
	start = time.Now()
	get(t, g.url("/"))
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("undelayed request took %v", d)
	}
}

func TestMCPAuthenticationMetadataAndChallenge(t *testing.T) {
	g := startBehindEcho(t, `mcpAuthentication:
  issuer: http://idp.example
  audiences: [http://localhost:3000/mcp]
  jwks: '{"keys": []}'
  resourceMetadata:
    resource: http://localhost:3000/mcp
    scopesSupported: [read:all]
    bearerMethodsSupported: [header]`, "")
	st, b, h := get(t, g.url("/.well-known/oauth-protected-resource/mcp"))
	var md map[string]any
	if st != 200 || json.Unmarshal([]byte(b), &md) != nil {
		t.Fatalf("metadata: %d %s", st, b)
	}
	// A configured resource wins over the one computed from the request
	// (agentgateway's to_rfc_json copies the configured keys last).
	if md["resource"] != "http://localhost:3000/mcp" || fmt.Sprint(md["authorization_servers"]) != "[http://idp.example]" ||
		fmt.Sprint(md["scopes_supported"]) != "[read:all]" || md["resource_type"] != "mcp-server" || h.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("metadata: %s", b)
	}
	st, _, h = get(t, g.url("/mcp"))
	if want := `Bearer resource_metadata="http://localhost:3000/.well-known/oauth-protected-resource/mcp"`; st != 401 || h.Get("WWW-Authenticate") != want {
		t.Errorf("challenge: %d %q", st, h.Get("WWW-Authenticate"))
	}
}

func TestBackendAuthJWTSignAndKey(t *testing.T) {
	var authz string
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { authz = r.Header.Get("Authorization") }))
	t.Cleanup(be.Close)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), `backendAuth:
  jwtSign:
    signingKey: |
      -----BEGIN PRIVATE KEY-----
      MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLzzSCp9GwtSu9U6R
      3OIveZe93Vs7jy2IpOT2/Ieu+jWhRANCAASqHIGiZTO9Qgwnm2jKlomX/cRAthGw
      Zr+wQ4bp3GVScNiij/+XFnsEzZb2kTx00l5t5H9uEFlVwD6/vZ14TEQu
      -----END PRIVATE KEY-----
    alg: ES256
    kid: demo-key-1
    claims: {sub: MYACCOUNT.MYUSER, aud: "http://127.0.0.1:8080"}
    ttl: 300s`, ""), port)
	get(t, g.url("/"))
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	parts := strings.Split(tok, ".")
	if !ok || len(parts) != 3 {
		t.Fatalf("backend got Authorization %q", authz)
	}
	var hdr, claims map[string]any
	decodeSeg(t, parts[0], &hdr)
	decodeSeg(t, parts[1], &claims)
	if hdr["alg"] != "ES256" || hdr["kid"] != "demo-key-1" || claims["sub"] != "MYACCOUNT.MYUSER" {
		t.Errorf("header %v claims %v", hdr, claims)
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 300 {
		t.Errorf("ttl: exp-iat = %v", exp-iat)
	}
}

func decodeSeg(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil || json.Unmarshal(b, v) != nil {
		t.Fatalf("segment %q: %v", seg, err)
	}
}

func TestNewBlocksBadInputNamesPathAndLine(t *testing.T) {
	for _, tc := range []struct{ policies, want string }{
		{"directResponse: {status: 200, bodi: x}", `9:39: binds[0].listeners[0].routes[0].policies.directResponse.bodi: unknown key`},
		{"requestMirror: {backend: {host: x:1}, percentage: high}", `binds[0].listeners[0].routes[0].policies.requestMirror.percentage: expected a number`},
		{"urlRewrite: {path: {full: 1, prefix: /x}}", `policies.urlRewrite.path.prefix: only one of full, prefix may be set`},
		{"delay: {duration: 'json(1)'}", `policies.delay.duration`},
		// delay's block is declared by its module (httppolicy/delay.go),
		// decoded by config as strictly as config's own.
		{"delay: {duration: 1s, jitter: 2s}", `9:31: binds[0].listeners[0].routes[0].policies.delay.jitter: unknown key (expected one of: duration)`},
		{"delay: {}", `policies.delay: missing required key "duration"`},
		{"Delay: {duration: 1s}", `policies.Delay: unknown key (did you mean "delay"?)`},
		{"backendAuth: {gcp: {}}", `policies.backendAuth.gcp: cloud provider credentials are not supported by tailgate`},
		{"retry: {codes: [abc]}", `policies.retry.codes[0]: expected an integer`},
		// retry's block, declared by its module, is checked by its Check.
		{"retry: {codes: [503], attempts: 300}", `policies.retry.attempts: expected 1 to 255, got 300`},
		{"retry: {codes: [503], backoff: soon}", `policies.retry.backoff: expected a positive duration like 500ms, 10s or 1m, got "soon"`},
		{"retry: {codes: [42]}", `9:16: binds[0].listeners[0].routes[0].policies.retry.codes[0]: expected an HTTP status code, got 42`},
		{"retry: {codes: [503], condition: x}", `policies.retry.condition: not supported by tailgate yet`},
	} {
		port := freePort(t)
		path := t.TempDir() + "/c.yaml"
		writeFile(t, path, []byte(simpleConfig(port, "127.0.0.1:1", tc.policies, "")))
		err := Validate(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.policies, err, tc.want)
		}
	}
}
