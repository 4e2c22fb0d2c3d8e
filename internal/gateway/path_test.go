package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"
	"time"
)

// rawRequest sends target exactly as given (Go's client would clean or
// re-escape it) and returns the answer. extra is more header lines.
func rawRequest(t *testing.T, port int, method, target string, extra ...string) (int, string, http.Header) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n", method, target, port)
	for _, h := range extra {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// fileLikeBackend answers like a naive static file server: it resolves
// the decoded path it receives (path.Clean) and serves the secret for
// anything under /admin. It reports the route (the X-Route header each
// route sets) and the request target it saw.
func fileLikeBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret := ""
		if clean := path.Clean(r.URL.Path); clean == "/admin" || strings.HasPrefix(clean, "/admin/") || clean == "/exact-admin" {
			secret = " SECRET"
		}
		fmt.Fprintf(w, "route=%s uri=%s%s", r.Header.Get("X-Route"), r.RequestURI, secret)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// pathConfig is issue 11's setup: /admin behind jwtAuth strict and a
// rule, an exact route whose rule is false, two routes that opted in to
// encoded slashes and semicolons, and a catch-all.
func pathConfig(port int, backend, jwks string) string {
	route := func(name, match, extra, policies string) string {
		return fmt.Sprintf(`
    - name: %s
      matches: [{path: %s}]%s
      policies:
        requestHeaderModifier: {set: {x-route: %s}}%s
      backends: [{host: %s}]`, name, match, extra, name, policies, backend)
	}
	return fmt.Sprintf("binds:\n- port: %d\n  listeners:\n  - name: default\n    protocol: HTTP\n    routes:", port) +
		route("admin", "{pathPrefix: /admin}", "", fmt.Sprintf(`
        jwtAuth: {mode: strict, issuer: https://idp.example.com, audiences: [gateway], jwks: %s}
        authorization: {rules: ['jwt.sub == "alice"']}`, jwks)) +
		route("exact-admin", "{exact: /exact-admin}", "", `
        authorization: {rules: ['false']}`) +
		route("files", "{pathPrefix: /api/files}", "\n      pathNormalization: {allowEncodedSlashes: true}", "") +
		route("matrix", "{pathPrefix: /matrix}", "\n      pathNormalization: {allowSemicolons: true}", "") +
		route("public", "{pathPrefix: /}", "", "") + "\n"
}

// TestPathNormalizationTable: every path form of issue 11 and their
// relatives against routes with policies. Each case says which answer the
// client gets and, when a backend serves it, which route served it and
// the exact request target the backend saw. Whatever the form, the
// secret under /admin is only ever served through the admin route.
func TestPathNormalizationTable(t *testing.T) {
	be := fileLikeBackend(t)
	p := newIDP(t, "k1")
	port := freePort(t)
	g := startGateway(t, pathConfig(port, hostOf(be), fmt.Sprintf("{url: %q}", p.srv.URL)), port)
	auth := "Authorization: Bearer " + p.token("k1", goodClaims())
	abs := fmt.Sprintf("http://127.0.0.1:%d", port)

	const (
		unauth = 401 // reached the admin route: jwtAuth strict refused
		denied = 403 // reached the exact-admin route: rule false
		bad    = 400 // refused before routing
	)
	for _, c := range []struct {
		target string
		status int
		route  string // for 200: the route that served it
		uri    string // for 200: what the backend saw
		token  bool
	}{
		// issue 11's forms
		{target: "/admin/secret.txt", status: unauth},
		{target: "//admin/secret.txt", status: unauth},
		{target: "/public/../admin/secret.txt", status: unauth},
		{target: "/./admin/secret.txt", status: unauth},
		{target: "/%2fadmin/secret.txt", status: bad},
		{target: "/%2e/admin/secret.txt", status: unauth},
		{target: "/x/%2e%2e/admin/secret.txt", status: unauth},
		{target: "/x/..%2fadmin/secret.txt", status: bad},
		{target: abs + "//admin/secret.txt", status: unauth},
		{target: "//exact-admin", status: denied},
		// dot segments, slashes, mixed case escapes
		{target: "/exact-admin", status: denied},
		{target: "/%2e%2e/exact-admin", status: denied},
		{target: "/public/%2E%2E/exact-admin", status: denied},
		{target: "/public/.%2e/admin/secret.txt", status: unauth},
		{target: "/public/%2E%2e/admin/secret.txt", status: unauth},
		{target: "/../../admin/secret.txt", status: unauth},
		{target: "/admin//secret.txt", status: unauth},
		{target: "///admin///secret.txt", status: unauth},
		{target: "/%61dmin/secret.txt", status: unauth},
		{target: abs + "/x/%2e%2e/admin/secret.txt", status: unauth},
		// encoded slashes and backslashes
		{target: "/admin%2fsecret.txt", status: bad},
		{target: "/admin%2Fsecret.txt", status: bad},
		{target: "/admin%5csecret.txt", status: bad},
		{target: "/admin/%2e%2e%2fadmin", status: bad},
		{target: "/%2F", status: bad},
		{target: `/x\..\admin\secret.txt`, status: bad},
		{target: `/public\secret.txt`, status: bad},
		// NUL, control characters, invalid escapes, overlong UTF-8
		{target: "/admin%00.txt", status: bad},
		{target: "/public/%00", status: bad},
		{target: "/public/a%0d%0aX-Injected:%201", status: bad},
		{target: "/public/a%zz", status: bad},
		{target: "/%c0%ae%c0%ae/admin/secret.txt", status: bad},
		{target: "/public/%c0%ae%c0%ae/%c0%ae%c0%ae/admin/secret.txt", status: bad},
		{target: "/public/%ff", status: bad},
		// double encoding is decoded once: %252e is the text "%2e", not a dot
		{target: "/%252e%252e/admin/secret.txt", status: 200, route: "public", uri: "/%252e%252e/admin/secret.txt"},
		{target: "/x/%252e%252e%252fadmin", status: 200, route: "public", uri: "/x/%252e%252e%252fadmin"},
		// semicolon path parameters
		{target: "/admin;x/secret.txt", status: bad},
		{target: "/public;x/secret.txt", status: bad},
		{target: "/public;x/../admin/secret.txt", status: unauth},
		{target: "/x/..;/admin/secret.txt", status: unauth},
		{target: "/matrix;v=1/item", status: 200, route: "matrix", uri: "/matrix;v=1/item"},
		{target: "/matrix/a;b/../c", status: 200, route: "matrix", uri: "/matrix/c"},
		{target: "/matrix/..;/admin/secret.txt", status: unauth},
		// fragments are never part of a request target
		{target: "/admin#frag", status: bad},
		{target: "/public/index.txt#../../admin/secret.txt", status: bad},
		{target: "/admin%23x", status: 200, route: "public", uri: "/admin%23x"},
		// a route that opted in to encoded slashes
		{target: "/api/files/group%2Fproject", status: 200, route: "files", uri: "/api/files/group%2Fproject"},
		{target: "/api/files/group%2fproject", status: 200, route: "files", uri: "/api/files/group%2Fproject"},
		{target: "/api/files/..%2F..%2Fadmin/secret.txt", status: bad},
		{target: "/api/files/%2e%2e/%2e%2e/admin/secret.txt", status: unauth},
		// ordinary paths; queries are kept as sent
		{target: "/public/index.txt?x=%2e%2e/admin&y=1", status: 200, route: "public", uri: "/public/index.txt?x=%2e%2e/admin&y=1"},
		{target: "/public//index.txt?a=1", status: 200, route: "public", uri: "/public/index.txt?a=1"},
		{target: "/public/caf%c3%a9", status: 200, route: "public", uri: "/public/caf%C3%A9"},
		{target: "/public/%7Euser/%41", status: 200, route: "public", uri: "/public/~user/A"},
		{target: "/public/a/b/..", status: 200, route: "public", uri: "/public/a/"},
		{target: "/Admin/secret.txt", status: 200, route: "public", uri: "/Admin/secret.txt"},
		{target: "/exact-admin/", status: denied},
		{target: "/exact-admin//", status: denied},
		{target: abs, status: 200, route: "public", uri: "/"},
		// with a valid token the admin route serves the normalized path
		{target: "//admin/secret.txt", status: 200, route: "admin", uri: "/admin/secret.txt", token: true},
		{target: "/admin/./x/%2e%2e/secret.txt", status: 200, route: "admin", uri: "/admin/secret.txt", token: true},
		{target: abs + "//admin/secret.txt", status: 200, route: "admin", uri: "/admin/secret.txt", token: true},
	} {
		var extra []string
		if c.token {
			extra = append(extra, auth)
		}
		code, body, _ := rawRequest(t, port, "GET", c.target, extra...)
		if code != c.status {
			t.Errorf("GET %s: %d %q, want %d", c.target, code, body, c.status)
			continue
		}
		if strings.Contains(body, "SECRET") && !strings.HasPrefix(body, "route=admin ") {
			t.Errorf("GET %s: the secret was served by another route: %q", c.target, body)
		}
		if code == 200 {
			if want := fmt.Sprintf("route=%s uri=%s", c.route, c.uri); !strings.HasPrefix(body, want) {
				t.Errorf("GET %s: backend answered %q, want %q", c.target, body, want)
			}
		}
	}
	// A refusal is logged with its reason, never with the path.
	log := g.access.WaitFor(t, "policy=pathNormalization")
	if !strings.Contains(log, `reason="encoded slash or backslash (%2F, %5C)"`) {
		t.Errorf("access log lacks the refusal reason:\n%s", log)
	}
}

// TestPathRulesSeeNormalizedPath: request.path in a rule is the
// normalized path, so a rule on the path cannot be dodged either.
func TestPathRulesSeeNormalizedPath(t *testing.T) {
	be := fileLikeBackend(t)
	port := freePort(t)
	startGateway(t, simpleConfig(port, hostOf(be), `
authorization:
  rules:
  - deny: 'request.path.startsWith("/admin")'
  - 'true'`, ""), port)
	for _, target := range []string{"/admin/secret.txt", "//admin/secret.txt", "/x/../admin/secret.txt", "/%2e/admin/secret.txt"} {
		if code, body, _ := rawRequest(t, port, "GET", target); code != http.StatusForbidden {
			t.Errorf("GET %s: %d %q, want 403", target, code, body)
		}
	}
	if code, _, _ := rawRequest(t, port, "GET", "/public/x"); code != 200 {
		t.Errorf("GET /public/x: %d, want 200", code)
	}
}
