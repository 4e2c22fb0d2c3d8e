package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/testlog"
)

// Secrets the token-exchange tests use; none may appear in a log.
const (
	teClientSecret = "requester-secret-9f2c"
	teUserToken    = "user-token-alice-77d1"
	teOtherToken   = "user-token-bob-31aa"
	teRevokedToken = "user-token-revoked-5b0e"
)

// tokenEndpoint is an in-test OAuth token endpoint: it checks the
// gateway's client credentials, answers invalid_grant for the revoked
// subject token, and otherwise issues "exchanged-<subject>".
type tokenEndpoint struct {
	*httptest.Server
	mu    sync.Mutex
	forms []url.Values
	basic []string
	// answer, when set, replaces the normal answer (status, JSON).
	answer func(w http.ResponseWriter)
}

func startTokenEndpoint(t *testing.T) *tokenEndpoint {
	t.Helper()
	te := &tokenEndpoint{}
	te.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		user, pass, _ := r.BasicAuth()
		te.mu.Lock()
		te.forms = append(te.forms, r.PostForm)
		te.basic = append(te.basic, user+":"+pass)
		answer := te.answer
		te.mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/realms/backend-oauth/token" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "wrong request", http.StatusNotFound)
			return
		}
		if answer != nil {
			answer(w)
			return
		}
		if pass != teClientSecret && r.PostForm.Get("client_secret") != teClientSecret {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		subject := r.PostForm.Get("subject_token") + r.PostForm.Get("assertion")
		if subject == teRevokedToken {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant","error_description":"token `+subject+` revoked"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"exchanged-%s","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","expires_in":300}`, subject)
	}))
	t.Cleanup(te.Close)
	return te
}

func (te *tokenEndpoint) firstBasic() string {
	te.mu.Lock()
	defer te.mu.Unlock()
	return te.basic[0]
}

func (te *tokenEndpoint) calls() []url.Values {
	te.mu.Lock()
	defer te.mu.Unlock()
	return append([]url.Values(nil), te.forms...)
}

// authEcho answers with the Authorization and X-Gw headers it received.
func authEcho(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "authorization=%s x-gw=%s", r.Header.Get("Authorization"), r.Header.Get("X-Gw"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// tokenExchangeConfig is a route whose backend exchanges tokens; the
// route itself sets a static backendAuth key (which the backend's own
// backendAuth replaces) and a request header (which still applies).
func tokenExchangeConfig(port int, backend, endpoint, exchange string) string {
	return fmt.Sprintf(`binds:
- port: %d
  listeners:
  - protocol: HTTP
    routes:
    - name: exchange
      policies:
        backendAuth: {key: route-static-key}
        requestHeaderModifier: {set: {x-gw: route}}
      backends:
      - host: %s
        policies:
          backendAuth:
            oauthTokenExchange:
              host: %s
              path: /realms/backend-oauth/token
%s
`, port, backend, endpoint, indent(exchange, "              "))
}

const rfc8693Exchange = `clientAuth:
  clientId: requester-client
  clientSecret: ` + teClientSecret + `
  method: clientSecretBasic
audiences: [target-client]
requestedTokenType: urn:ietf:params:oauth:token-type:access_token`

// debugLogs makes the gateway log at debug level into buf, so a test can
// check that not even debug lines carry a secret.
func debugLogs(buf *testlog.Buffer) func(*Options) {
	return func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

func TestTokenExchangeSendsTheBackendTheExchangedToken(t *testing.T) {
	be := authEcho(t)
	te := startTokenEndpoint(t)
	port := freePort(t)
	g := startGateway(t, tokenExchangeConfig(port, hostOf(be), hostOf(te.Server), rfc8693Exchange), port)

	code, body, _ := get(t, g.url("/data"), "Authorization", "Bearer "+teUserToken)
	if code != 200 || body != "authorization=Bearer exchanged-"+teUserToken+" x-gw=route" {
		t.Fatalf("exchanged request: %d %q", code, body)
	}
	if strings.Contains(body, "route-static-key") {
		t.Fatal("the route's backendAuth ran although the backend sets its own")
	}
	f := te.calls()[0]
	want := url.Values{
		"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":        {teUserToken},
		"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
		"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":             {"target-client"},
	}
	if f.Encode() != want.Encode() {
		t.Errorf("token request form:\n got %s\nwant %s", f.Encode(), want.Encode())
	}
	if te.firstBasic() != "requester-client:"+teClientSecret {
		t.Errorf("client authentication: %q", te.firstBasic())
	}

	// The same caller again: the cached token, no second exchange.
	code, body, _ = get(t, g.url("/data"), "Authorization", "Bearer "+teUserToken)
	if code != 200 || !strings.Contains(body, "exchanged-"+teUserToken) || len(te.calls()) != 1 {
		t.Errorf("second request: %d %q after %d exchanges (want 1)", code, body, len(te.calls()))
	}
	// Another caller gets their own token, never alice's.
	_, body, _ = get(t, g.url("/data"), "Authorization", "Bearer "+teOtherToken)
	if !strings.Contains(body, "exchanged-"+teOtherToken) || len(te.calls()) != 2 {
		t.Errorf("other caller: %q after %d exchanges (want 2)", body, len(te.calls()))
	}
}

func TestTokenExchangeJWTBearerWithClientSecretPost(t *testing.T) {
	be := authEcho(t)
	te := startTokenEndpoint(t)
	port := freePort(t)
	exchange := `grantType: jwtBearer
clientAuth:
  clientId: my-app
  clientSecret: ` + teClientSecret + `
  method: clientSecretPost
scopes: [https://graph.example/.default, offline_access]
additionalParams:
  requested_token_use: '"on_behalf_of"'
  route: request.path
cache: {maxEntries: 0}`
	g := startGateway(t, tokenExchangeConfig(port, hostOf(be), hostOf(te.Server), exchange), port)
	for range 2 {
		code, body, _ := get(t, g.url("/obo"), "Authorization", "Bearer "+teUserToken)
		if code != 200 || !strings.Contains(body, "authorization=Bearer exchanged-"+teUserToken) {
			t.Fatalf("jwt-bearer request: %d %q", code, body)
		}
	}
	calls := te.calls()
	if len(calls) != 2 {
		t.Errorf("%d exchanges with the cache off, want 2", len(calls))
	}
	f := calls[0]
	want := url.Values{
		"grant_type":          {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"assertion":           {teUserToken},
		"scope":               {"https://graph.example/.default offline_access"},
		"requested_token_use": {"on_behalf_of"},
		"route":               {"/obo"},
		"client_id":           {"my-app"},
		"client_secret":       {teClientSecret},
	}
	if f.Encode() != want.Encode() || te.firstBasic() != ":" {
		t.Errorf("token request form:\n got %s (basic %q)\nwant %s", f.Encode(), te.firstBasic(), want.Encode())
	}
}

func TestTokenExchangeFailuresDenyAndLeakNoSecret(t *testing.T) {
	be := authEcho(t)
	te := startTokenEndpoint(t)
	// A port nothing listens on.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadHost := hostOf(dead)
	dead.Close()
	logs := &testlog.Buffer{}
	port := freePort(t)
	cfg := tokenExchangeConfig(port, hostOf(be), hostOf(te.Server), rfc8693Exchange)
	cfg += fmt.Sprintf(`    - name: down
      matches: [{path: {pathPrefix: /down}}]
      backends:
      - host: %s
        policies:
          backendAuth:
            oauthTokenExchange:
              host: %s
              clientAuth: {clientId: requester-client, clientSecret: %s}
`, hostOf(be), deadHost, teClientSecret)
	g := startGateway(t, cfg, port, debugLogs(logs))

	for _, tc := range []struct {
		name, path, token string
		answer            func(w http.ResponseWriter)
		want              int
		reason            string
	}{
		{"no bearer token", "/data", "", nil, 400, "no subject token"},
		{"token refused by the server", "/data", teRevokedToken, nil, 400, "answered 400 invalid_grant"},
		{"server error", "/data", teUserToken + "-x", func(w http.ResponseWriter) { w.WriteHeader(503) }, 500, "answered 503"},
		{"gateway's credentials refused", "/data", teUserToken + "-y", func(w http.ResponseWriter) {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":"invalid_client"}`)
		}, 500, "answered 401 invalid_client"},
		{"not a bearer token", "/data", teUserToken + "-z", func(w http.ResponseWriter) {
			io.WriteString(w, `{"access_token":"exchanged-`+teUserToken+`-z","token_type":"DPoP"}`)
		}, 500, "token_type is not Bearer"},
		{"server unreachable", "/down", teUserToken, nil, 500, "unreachable"},
	} {
		te.mu.Lock()
		te.answer = tc.answer
		te.mu.Unlock()
		hdr := []string{}
		if tc.token != "" {
			hdr = []string{"Authorization", "Bearer " + tc.token}
		}
		code, body, _ := get(t, g.url(tc.path), hdr...)
		if code != tc.want || strings.Contains(body, "authorization=") {
			t.Errorf("%s: %d %q, want %d and no backend", tc.name, code, body, tc.want)
		}
		line := lineWith(g.access.WaitFor(t, tc.reason), tc.reason)
		if !strings.Contains(line, "policy=backendAuth") {
			t.Errorf("%s: access log %q", tc.name, line)
		}
	}
	all := g.access.String() + logs.String()
	for _, secret := range []string{teClientSecret, teUserToken, teRevokedToken, "exchanged-"} {
		if strings.Contains(all, secret) {
			t.Errorf("a log line carries the secret %q:\n%s", secret, all)
		}
	}
}

func TestTokenExchangeBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/config.yaml"
	for _, tc := range []struct{ exchange, want string }{
		{"audiences: target-client", `config.yaml:17:26: binds[0].listeners[0].routes[0].backends[0].policies.backendAuth.oauthTokenExchange.audiences: expected a list, got "target-client"`},
		{"grantType: password", `backendAuth.oauthTokenExchange.grantType: expected tokenExchange or jwtBearer, got "password"`},
		{"clientAuth: {clientId: c, method: clientSecretJwt}", `oauthTokenExchange.clientAuth.method: expected clientSecretBasic, clientSecretPost or privateKeyJwt, got "clientSecretJwt"`},
		{"clientAuth: {clientId: c}", `oauthTokenExchange.clientAuth: missing required key "clientSecret"`},
		{"clientAuth: {clientId: c, clientSecret: s, methd: clientSecretPost}", `oauthTokenExchange.clientAuth.methd: unknown key`},
		{"additionalParams: {client_id: '\"x\"'}", `oauthTokenExchange.additionalParams.client_id: "client_id" is set by the gateway`},
		{"additionalParams: {x: 'request.path +'}", `oauthTokenExchange.additionalParams.x`},
		{"grantType: jwtBearer\nrequestedTokenType: urn:ietf:params:oauth:token-type:jwt", `requestedTokenType is only valid with grantType tokenExchange`},
		{"cache: {maxEntries: -1}", `oauthTokenExchange.cache.maxEntries: expected a non-negative integer`},
		{"cache: {defaultTtl: soon}", `oauthTokenExchange.cache.defaultTtl: expected a positive duration`},
		{"actorToken: {source: {header: {name: x-actor}}}", `oauthTokenExchange.actorToken: not supported by tailgate yet`},
	} {
		os.WriteFile(path, []byte(tokenExchangeConfig(1, "127.0.0.1:1", "127.0.0.1:2", tc.exchange)), 0o600)
		err := Validate(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.exchange, err, tc.want)
		}
	}
	for _, tc := range []struct{ cfg, want string }{
		{`binds:
- port: 1
  listeners:
  - routes:
    - backends:
      - host: 127.0.0.1:1
        policies: {backendAuth: {key: k}, retry: {codes: [503]}}
`, `config.yaml:7:43: binds[0].listeners[0].routes[0].backends[0].policies.retry: unknown key`},
		{`binds:
- port: 1
  listeners:
  - routes:
    - backends:
      - mcp: {targets: [{name: a, mcp: {host: "http://127.0.0.1:1/mcp"}}]}
        policies: {backendAuth: {key: k}}
`, `backends[0].policies: policies on an mcp backend are not supported by tailgate yet`},
		{`binds:
- port: 1
  listeners:
  - routes:
    - backends:
      - host: 127.0.0.1:1
        policies: [backendAuth]
`, `config.yaml:7:19: binds[0].listeners[0].routes[0].backends[0].policies: expected an object`},
	} {
		os.WriteFile(path, []byte(tc.cfg), 0o600)
		err := Validate(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.cfg, err, tc.want)
		}
	}
}
