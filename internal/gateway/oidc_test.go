package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

// testOIDCProvider is an OpenID provider in the test: discovery, an
// authorize endpoint that logs the user in at once and sends the browser
// back with a code, a token endpoint that checks the client and the PKCE
// verifier and issues a signed ID token, and the JWKS.
type testOIDCProvider struct {
	*httptest.Server
	key      *rsa.PrivateKey
	clientID string
	secret   string
	// lifetime is the ID tokens' exp, from now.
	lifetime time.Duration
	// noDiscovery makes the issuer's discovery URL fail (set before the
	// first request), for configs that must not use it.
	noDiscovery bool

	mu        sync.Mutex
	codes     map[string]url.Values // code → the authorize request
	authorize []url.Values
}

func newTestOIDCProvider(t *testing.T) *testOIDCProvider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &testOIDCProvider{key: key, clientID: "gw-browser", secret: "s3cret:x", lifetime: time.Hour, codes: map[string]url.Values{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if p.noDiscovery {
			http.Error(w, "discovery is off", http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                p.URL,
			"authorization_endpoint":                p.URL + "/authorize",
			"token_endpoint":                        p.URL + "/token",
			"jwks_uri":                              p.URL + "/jwks",
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		code := fmt.Sprintf("code-%d", time.Now().UnixNano())
		p.mu.Lock()
		p.codes[code] = q
		p.authorize = append(p.authorize, q)
		p.mu.Unlock()
		back, _ := url.Parse(q.Get("redirect_uri"))
		back.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, _ := r.BasicAuth()
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		if id != p.clientID || secret != p.secret {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		r.ParseForm()
		p.mu.Lock()
		auth, ok := p.codes[r.Form.Get("code")]
		delete(p.codes, r.Form.Get("code"))
		p.mu.Unlock()
		sum := sha256.Sum256([]byte(r.Form.Get("code_verifier")))
		if !ok || r.Form.Get("grant_type") != "authorization_code" || r.Form.Get("redirect_uri") != auth.Get("redirect_uri") ||
			auth.Get("code_challenge_method") != "S256" || base64.RawURLEncoding.EncodeToString(sum[:]) != auth.Get("code_challenge") {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": "opaque", "token_type": "Bearer", "id_token": p.idToken(t, auth.Get("nonce"))})
	})
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

func (p *testOIDCProvider) idToken(t *testing.T, nonce string) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Error(err)
	}
	now := time.Now()
	raw, err := jwt.Signed(sig).Claims(map[string]any{
		"iss": p.URL, "aud": p.clientID, "sub": "alice-123", "email": "alice@example.com",
		"nonce": nonce, "iat": now.Unix(), "exp": now.Add(p.tokenLifetime()).Unix(),
	}).Serialize()
	if err != nil {
		t.Error(err)
	}
	return raw
}

func (p *testOIDCProvider) tokenLifetime() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lifetime
}

func (p *testOIDCProvider) setLifetime(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lifetime = d
}

func (p *testOIDCProvider) logins() []url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]url.Values(nil), p.authorize...)
}

// browser keeps cookies and stops at every redirect, so a test sees
// each step of the login.
func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

func visit(t *testing.T, c *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	resp, b := testhttp.Get(t, c, u)
	return resp.StatusCode, string(b), resp.Header
}

// startOIDCGateway runs traffic-oidc's config shape against p, with
// an authorization rule over the ID token's claims.
func startOIDCGateway(t *testing.T, p *testOIDCProvider) *testGateway {
	t.Helper()
	be := echoBackend(t)
	port := freePort(t)
	return startGateway(t, fmt.Sprintf(`
frontendPolicies:
  accessLog:
    add:
      user.id: jwt.sub
      user.email: jwt.email
binds:
- port: %d
  listeners:
  - name: default
    protocol: HTTP
    routes:
    - name: app
      matches:
      - path:
          pathPrefix: /
      backends:
      - host: %s
      policies:
        oidc:
          issuer: %s
          clientId: %s
          clientSecret: %s
          redirectURI: http://127.0.0.1:%[1]d/oauth/callback
          scopes: [profile, email]
        authorization:
          rules:
          - 'jwt.email.endsWith("@example.com")'
`, port, hostOf(be), p.URL, p.clientID, p.secret), port)
}

// login walks a browser from u through the provider and back; it returns
// the page the backend served at the end.
func login(t *testing.T, c *http.Client, g *testGateway, p *testOIDCProvider, u string) string {
	t.Helper()
	code, _, h := visit(t, c, u)
	loc := h.Get("Location")
	if code != http.StatusFound || !strings.HasPrefix(loc, p.URL+"/authorize?") {
		t.Fatalf("GET %s: %d to %q; want a redirect to the provider", u, code, loc)
	}
	code, _, h = visit(t, c, loc)
	cb := h.Get("Location")
	if code != http.StatusFound || !strings.HasPrefix(cb, g.url("/oauth/callback?")) {
		t.Fatalf("provider: %d to %q", code, cb)
	}
	code, body, h := visit(t, c, cb)
	back := h.Get("Location")
	if code != http.StatusFound {
		t.Fatalf("callback: %d %s", code, body)
	}
	code, body, _ = visit(t, c, g.url(back))
	if code != http.StatusOK {
		t.Fatalf("after login, GET %s: %d %s", back, code, body)
	}
	return body
}

func TestOIDCLoginFlowSessionAndClaims(t *testing.T) {
	p := newTestOIDCProvider(t)
	g := startOIDCGateway(t, p)
	c := browser(t)

	body := login(t, c, g, p, g.url("/app/page?x=1"))
	if !strings.HasPrefix(body, "GET /app/page?x=1 ") {
		t.Errorf("the backend did not get the page the browser asked for: %s", body)
	}
	// The authorize request is agentgateway's: code flow, openid first,
	// state, nonce and PKCE S256.
	q := p.logins()[0]
	for k, want := range map[string]string{
		"response_type": "code", "client_id": p.clientID, "scope": "openid profile email",
		"redirect_uri": g.url("/oauth/callback"), "code_challenge_method": "S256",
	} {
		if q.Get(k) != want {
			t.Errorf("authorize %s = %q, want %q", k, q.Get(k), want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if q.Get(k) == "" {
			t.Errorf("authorize request lacks %s", k)
		}
	}
	// The session cookie is sealed, HttpOnly and Lax; the ID token is not
	// readable in it.
	u, _ := url.Parse(g.url("/"))
	var session *http.Cookie
	for _, ck := range c.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, "agw_oidc_s_") {
			session = ck
		}
		if strings.HasPrefix(ck.Name, "agw_oidc_t_") {
			t.Errorf("the transaction cookie outlived the callback: %s", ck.Name)
		}
	}
	if session == nil {
		t.Fatal("no session cookie after login")
	}
	if strings.Contains(session.Value, "eyJ") {
		t.Error("the session cookie shows the ID token in clear")
	}

	// The session is reused: no second trip to the provider.
	code, body, _ := visit(t, c, g.url("/other"))
	if code != http.StatusOK || !strings.HasPrefix(body, "GET /other ") {
		t.Fatalf("with a session, GET /other: %d %s", code, body)
	}
	if len(p.logins()) != 1 {
		t.Errorf("the provider saw %d logins, want 1", len(p.logins()))
	}
	// The claims are jwt.* as after jwtAuth: the access log and the
	// authorization rule read them; the backend gets no token.
	line := lineWith(g.access.WaitFor(t, "path=/other"), "path=/other")
	for _, want := range []string{"user.id=alice-123", "user.email=alice@example.com"} {
		if !strings.Contains(line, want) {
			t.Errorf("access log lacks %s: %s", want, line)
		}
	}
	if strings.Contains(body, "Bearer") {
		t.Errorf("the backend was handed a token: %s", body)
	}

	// A tampered session cookie is no session.
	jar, _ := cookiejar.New(nil)
	jar.SetCookies(u, []*http.Cookie{{Name: session.Name, Value: session.Value[:len(session.Value)-2] + "AA", Path: "/"}})
	forged := &http.Client{Jar: jar, CheckRedirect: c.CheckRedirect}
	if code, _, h := visit(t, forged, g.url("/other")); code != http.StatusFound || !strings.HasPrefix(h.Get("Location"), p.URL) {
		t.Errorf("a tampered session got %d %q; want the login redirect", code, h.Get("Location"))
	}
}

func TestOIDCCallbackRefusesBadState(t *testing.T) {
	p := newTestOIDCProvider(t)
	g := startOIDCGateway(t, p)
	c := browser(t)
	_, _, h := visit(t, c, g.url("/"))
	_, _, h = visit(t, c, h.Get("Location"))
	cb, _ := url.Parse(h.Get("Location"))
	q := cb.Query()
	var st map[string]string
	raw, _ := base64.RawURLEncoding.DecodeString(q.Get("state"))
	json.Unmarshal(raw, &st)

	// Same transaction, another CSRF token: refused, the code unused.
	st["csrfState"] = "forged"
	raw, _ = json.Marshal(st)
	bad := url.Values{"code": {q.Get("code")}, "state": {base64.RawURLEncoding.EncodeToString(raw)}}
	code, body, h := visit(t, c, g.url("/oauth/callback?"+bad.Encode()))
	if code != http.StatusBadRequest || !strings.Contains(body, "csrf mismatch") || h.Get("Set-Cookie") != "" {
		t.Errorf("forged state: %d %q (cookies %q); want 400 csrf mismatch and no session", code, body, h.Get("Set-Cookie"))
	}
	// A state that is not ours at all, or a callback from a browser that
	// never started the login: 400.
	code, _, _ = visit(t, c, g.url("/oauth/callback?code=x&state=garbage"))
	if code != http.StatusBadRequest {
		t.Errorf("garbage state: %d, want 400", code)
	}
	if code, body, _ := visit(t, browser(t), cb.String()); code != http.StatusBadRequest || !strings.Contains(body, "missing transaction") {
		t.Errorf("callback without the transaction cookie: %d %q", code, body)
	}
	// The real callback still works: the code was never spent.
	if code, _, h := visit(t, c, cb.String()); code != http.StatusFound || h.Get("Location") != "/" {
		t.Errorf("the genuine callback: %d to %q", code, h.Get("Location"))
	}
}

func TestOIDCExpiredSessionLogsInAgain(t *testing.T) {
	p := newTestOIDCProvider(t)
	p.setLifetime(time.Second) // the session ends with the ID token
	g := startOIDCGateway(t, p)
	c := browser(t)
	login(t, c, g, p, g.url("/a"))
	time.Sleep(2100 * time.Millisecond)
	code, _, h := visit(t, c, g.url("/a"))
	if code != http.StatusFound || !strings.HasPrefix(h.Get("Location"), p.URL+"/authorize?") {
		t.Fatalf("after the session expired: %d to %q; want the login redirect", code, h.Get("Location"))
	}
	p.setLifetime(time.Hour)
	login(t, c, g, p, g.url("/a"))
}

func TestOIDCCookieSecretMustBe32HexBytes(t *testing.T) {
	t.Setenv("OIDC_COOKIE_SECRET", "not-hex")
	t.Chdir("testdata/agentgateway")
	err := Validate("examples/traffic-oidc/config.yaml")
	if err == nil || !strings.Contains(err.Error(), "routes[0].policies.oidc: OIDC_COOKIE_SECRET must be 32 bytes") {
		t.Fatalf("err = %v", err)
	}
	t.Setenv("OIDC_COOKIE_SECRET", strings.Repeat("ab", 32))
	if err := Validate("examples/traffic-oidc/config.yaml"); err != nil {
		t.Fatal(err)
	}
}
