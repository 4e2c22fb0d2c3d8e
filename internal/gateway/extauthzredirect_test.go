package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// oauth2Proxy stands in for oauth2-proxy: /oauth2/auth answers 202 with
// the user's headers for a signed-in cookie, 401 without one, 500 when
// asked to fail; /oauth2/start is its sign-in page.
func oauth2Proxy(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/oauth2/auth" && strings.Contains(r.Header.Get("Cookie"), "_oauth2_proxy=alice"):
			w.Header().Set("X-Auth-Request-User", "alice")
			w.Header().Set("X-Auth-Request-Email", "alice@example.com")
			w.WriteHeader(http.StatusAccepted)
		case r.URL.Path == "/oauth2/auth" && r.Header.Get("X-Fail") != "":
			http.Error(w, "proxy broke", http.StatusInternalServerError)
		case r.URL.Path == "/oauth2/auth":
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		case r.URL.Path == "/oauth2/start":
			fmt.Fprintf(w, "sign in, then back to %s", r.URL.Query().Get("rd"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// noRedirects is a client that shows a 302 instead of following it.
var noRedirects = &http.Client{
	Transport:     &http.Transport{DisableKeepAlives: true},
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func getNoRedirect(t *testing.T, url string, hdr ...string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// The shape of agentgateway's examples/traffic-oauth2-proxy.
func TestExtAuthzRedirectSendsBrowsersToSignIn(t *testing.T) {
	proxy := oauth2Proxy(t)
	app := echoBackend(t)
	port := freePort(t)
	cfg := fmt.Sprintf(`
frontendPolicies:
  accessLog:
    add:
      github.user: 'extauthz.githubUser'
binds:
- port: %d
  listeners:
  - routes:
    - name: oauth2-proxy
      matches: [{path: {pathPrefix: /oauth2}}]
      backends: [{host: %[2]s}]
    - name: application
      backends: [{host: %[3]s}]
      policies:
        extAuthz:
          host: %[2]s
          includeRequestHeaders: [cookie, x-fail]
          protocol:
            http:
              path: '"/oauth2/auth"'
              redirect: '"/oauth2/start?rd=" + request.path'
              metadata:
                githubUser: response.headers["x-auth-request-user"]
              includeResponseHeaders: [x-auth-request-user]
`, port, hostOf(proxy), hostOf(app))
	g := startGateway(t, cfg, port)

	st, hdr := getNoRedirect(t, g.url("/reports/q3"))
	if st != http.StatusFound || hdr.Get("Location") != "/oauth2/start?rd=/reports/q3" {
		t.Fatalf("signed out: %d Location %q, want 302 to the sign-in page", st, hdr.Get("Location"))
	}
	// A browser following it lands on the proxy's page through the gateway.
	if _, body, _ := get(t, g.url("/reports/q3")); body != "sign in, then back to /reports/q3" {
		t.Errorf("following the redirect: %q", body)
	}
	line := lineWith(g.access.WaitFor(t, "status=302"), "status=302")
	if !strings.Contains(line, "policy=extAuthz") || !strings.Contains(line, "redirected") {
		t.Errorf("access log: %s", line)
	}

	// Signed in: through to the application, the user in the log and
	// passed on.
	st, body, _ := get(t, g.url("/reports/q3"), "Cookie", "_oauth2_proxy=alice")
	if st != http.StatusOK || !strings.HasPrefix(body, "GET /reports/q3") {
		t.Fatalf("signed in: %d %q", st, body)
	}
	if line := lineWith(g.access.WaitFor(t, "github.user=alice"), "github.user=alice"); !strings.Contains(line, "route=default/application") && !strings.Contains(line, "application") {
		t.Errorf("access log: %s", line)
	}

	// Only 401 and 403 redirect: the proxy's own failure is passed on.
	if st, hdr := getNoRedirect(t, g.url("/reports/q3"), "X-Fail", "1"); st != http.StatusInternalServerError || hdr.Get("Location") != "" {
		t.Errorf("authz 500: %d Location %q, want the 500 as it is", st, hdr.Get("Location"))
	}
}

func TestExtAuthzRedirectThatFailsStaysDenied(t *testing.T) {
	proxy := oauth2Proxy(t)
	app := echoBackend(t)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(app), fmt.Sprintf(`extAuthz:
  host: %s
  protocol:
    http:
      path: '"/oauth2/auth"'
      redirect: 'request.headers["x-return-to"]'`, hostOf(proxy)), ""), port)
	// The expression errors (no such header): denied, no Location.
	if st, hdr := getNoRedirect(t, g.url("/x")); st != http.StatusForbidden || hdr.Get("Location") != "" {
		t.Errorf("redirect error: %d Location %q, want 403 without one", st, hdr.Get("Location"))
	}
	if st, hdr := getNoRedirect(t, g.url("/x"), "X-Return-To", "/signin"); st != http.StatusFound || hdr.Get("Location") != "/signin" {
		t.Errorf("redirect: %d %q", st, hdr.Get("Location"))
	}
}

func TestExtAuthzRedirectBadInputNamesPathAndLine(t *testing.T) {
	dir := t.TempDir()
	for redirect, want := range map[string]string{
		"[a]":             `5:70: binds[0].listeners[0].routes[0].policies.extAuthz.protocol.http.redirect: expected a string, got a list`,
		`'"/a" + '`:       `binds[0].listeners[0].routes[0].policies.extAuthz.protocol.http.redirect`,
		`'response.code'`: `binds[0].listeners[0].routes[0].policies.extAuthz.protocol.http.redirect`,
	} {
		cfg := "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - policies: {extAuthz: {host: 'a:1', protocol: {http: {redirect: " + redirect + "}}}}\n      backends: [{host: 'a:2'}]\n"
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Validate(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("redirect %s: error %v, want one with %q", redirect, err, want)
		}
	}
}
