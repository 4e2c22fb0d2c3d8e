package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func discoveryDoc(p *testOIDCProvider, issuer string) string {
	return fmt.Sprintf(`{"issuer": %q, "authorization_endpoint": "%[2]s/authorize", "token_endpoint": "%[2]s/token", "jwks_uri": "%[2]s/jwks"}`, issuer, p.URL)
}

func startOIDCDiscoveryGateway(t *testing.T, p *testOIDCProvider, discovery string) *testGateway {
	t.Helper()
	be := echoBackend(t)
	port := freePort(t)
	return startGateway(t, fmt.Sprintf(`
binds:
- port: %d
  listeners:
  - routes:
    - backends: [{host: %s}]
      policies:
        oidc:
          issuer: %s
          discovery: %s
          clientId: %s
          clientSecret: %s
          redirectURI: http://127.0.0.1:%[1]d/oauth/callback
`, port, hostOf(be), p.URL, discovery, p.clientID, p.secret), port)
}

// oidc.discovery replaces the issuer's discovery URL: a file, an inline
// document or another URL. The provider's own discovery is broken here,
// so a login only works through the override.
func TestOIDCDiscoveryOverride(t *testing.T) {
	p := newTestOIDCProvider(t)
	p.noDiscovery = true
	file := filepath.Join(t.TempDir(), "openid-configuration.json")
	writeFile(t, file, []byte(discoveryDoc(p, p.URL)))
	alt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/custom/discovery" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, discoveryDoc(p, p.URL))
	}))
	t.Cleanup(alt.Close)
	for name, discovery := range map[string]string{
		"file":   fmt.Sprintf("{file: %s}", file),
		"inline": fmt.Sprintf("'%s'", discoveryDoc(p, p.URL)),
		"url":    fmt.Sprintf("{url: %s/custom/discovery}", alt.URL),
	} {
		t.Run(name, func(t *testing.T) {
			g := startOIDCDiscoveryGateway(t, p, discovery)
			if body := login(t, browser(t), g, p, g.url("/page")); !strings.HasPrefix(body, "GET /page ") {
				t.Errorf("after login: %s", body)
			}
		})
	}
	// Without the override the broken discovery is what the gateway
	// finds: a 502, not a login.
	g := startOIDCGateway(t, p)
	if code, _, _ := visit(t, browser(t), g.url("/page")); code != http.StatusBadGateway {
		t.Errorf("without discovery override: %d, want 502", code)
	}
}

// badOIDCConfig is an oidc policy whose line 9 is keys (indented for the
// policy block).
func badOIDCConfig(keys string) string {
	return fmt.Sprintf(`binds:
- port: 3000
  listeners:
  - routes:
    - backends: [{host: "localhost:1"}]
      policies:
        oidc:
          issuer: https://idp.example
          %s
          clientId: c
          clientSecret: s
          redirectURI: http://localhost:3000/cb
`, keys)
}

func TestOIDCDiscoveryOverrideBadInputNamesPathAndLine(t *testing.T) {
	dir := t.TempDir()
	const p = "binds[0].listeners[0].routes[0].policies.oidc.discovery"
	for discovery, want := range map[string]string{
		`'{"issuer": "https://other.example", "authorization_endpoint": "https://a/x", "token_endpoint": "https://a/t", "jwks_uri": "https://a/j"}'`: p + ": discovery issuer mismatch: expected https://idp.example, got https://other.example",
		`'{"issuer": "https://idp.example", "authorization_endpoint": "/relative", "token_endpoint": "https://a/t", "jwks_uri": "https://a/j"}'`:     `endpoint "/relative" is not an absolute http(s) URL`,
		`'not json'`:                 p + ": discovery inline document: invalid character",
		`{file: missing.json}`:       p + ": open ",
		`{url: ftp://idp.example/d}`: p + ".url: must be an absolute http(s) URL",
		`[a]`:                        p + ": expected an object with one of file, url, got a list",
		`{file: a, url: b}`:          p + `.url: only one of file, url may be set`,
	} {
		cfg := badOIDCConfig("discovery: " + discovery)
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		err := Validate(path)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "c.yaml:9:") {
			t.Errorf("discovery %s: error %v, want one at line 9 with %q", discovery, err, want)
		}
	}
	// Discovery and the explicit endpoints exclude each other.
	cfg := badOIDCConfig(`discovery: {url: https://idp.example/d}
          authorizationEndpoint: https://idp.example/a
          tokenEndpoint: https://idp.example/t
          jwks: {url: https://idp.example/j}`)
	path := filepath.Join(dir, "c.yaml")
	writeFile(t, path, []byte(cfg))
	if err := Validate(path); err == nil || !strings.Contains(err.Error(), "c.yaml:9:22: "+p+": must be omitted when authorizationEndpoint, tokenEndpoint and jwks are set") {
		t.Errorf("discovery with explicit endpoints: %v", err)
	}
}
