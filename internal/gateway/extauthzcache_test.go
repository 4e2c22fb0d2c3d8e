package gateway

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/testlog"
)

// fakeJWT is a JWT-shaped token with claims; its signature is junk, as
// the example only reads it with unvalidatedJwtPayload.
func fakeJWT(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(b) + ".c2ln"
}

// keycloakStandIn is the token endpoint of the traffic-token-exchange
// examples' Keycloak realm "backend-oauth": it requires the
// requester-client's Basic credentials and issues a JWT for
// target-client whose sub names the subject token's user (alice or bob,
// or service-account for client_credentials); ttl is the issued tokens'
// lifetime.
type keycloakStandIn struct {
	*httptest.Server
	mu    sync.Mutex
	forms []url.Values
	ttl   time.Duration
}

func startKeycloakStandIn(t *testing.T) *keycloakStandIn {
	k := &keycloakStandIn{ttl: time.Hour}
	k.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		k.mu.Lock()
		k.forms = append(k.forms, r.PostForm)
		ttl := k.ttl
		k.mu.Unlock()
		user, pass, _ := r.BasicAuth()
		if r.Method != http.MethodPost || r.URL.Path != "/realms/backend-oauth/protocol/openid-connect/token" || user != "requester-client" || pass != "requester-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		sub := "service-account"
		switch r.PostForm.Get("grant_type") {
		case "urn:ietf:params:oauth:grant-type:token-exchange":
			if r.PostForm.Get("subject_token") == teRevokedToken {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `{"error":"invalid_grant"}`)
				return
			}
			sub = map[string]string{teUserToken: "alice", teOtherToken: "bob"}[r.PostForm.Get("subject_token")]
		case "client_credentials":
		default:
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"unsupported_grant_type"}`)
			return
		}
		tok := fakeJWT(map[string]any{"sub": sub, "aud": r.PostForm.Get("audience"), "exp": time.Now().Add(ttl).Unix()})
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":%d}`, tok, int(ttl.Seconds()))
	}))
	t.Cleanup(k.Close)
	return k
}

func (k *keycloakStandIn) calls() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.forms)
}

// examplePort is an example's bind port (3000, 3030...).
var examplePort = regexp.MustCompile(`- port: [0-9]+`)

// startExample runs one of agentgateway's examples as written, on a free
// port instead of its own, with the hosts it names replaced (old, new
// pairs) by loopback stand-ins.
func startExample(t *testing.T, name string, hosts []string, mod ...func(*Options)) *testGateway {
	t.Helper()
	src, err := os.ReadFile("testdata/agentgateway/examples/" + name)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := examplePort.ReplaceAllString(string(src), fmt.Sprintf("- port: %d", port))
	cfg = strings.NewReplacer(hosts...).Replace(cfg)
	return startGateway(t, cfg, port, mod...)
}

// startExtAuthzExample runs agentgateway's traffic-token-exchange/extauthz
// example, its Keycloak and echo upstream replaced by stand-ins.
func startExtAuthzExample(t *testing.T, kc *keycloakStandIn, backend string, logs *testlog.Buffer) *testGateway {
	return startExample(t, "traffic-token-exchange/extauthz/config.yaml",
		[]string{"localhost:7080", hostOf(kc.Server), "localhost:18080", backend}, debugLogs(logs))
}

// backendSub is the sub claim of the token the echo backend received.
func backendSub(t *testing.T, body string) string {
	tok, ok := strings.CutPrefix(body, "authorization=Bearer ")
	if !ok {
		return ""
	}
	tok, _, _ = strings.Cut(tok, " ")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct{ Sub string }
	json.Unmarshal(b, &c)
	return c.Sub
}

func TestExtAuthzTokenExchangeExampleSendsExchangedTokens(t *testing.T) {
	kc := startKeycloakStandIn(t)
	be := authEcho(t)
	logs := &testlog.Buffer{}
	g := startExtAuthzExample(t, kc, hostOf(be), logs)

	code, body, _ := get(t, g.url("/exchange/items"), "Authorization", "Bearer "+teUserToken)
	if code != 200 || backendSub(t, body) != "alice" || strings.Contains(body, teUserToken+" ") {
		t.Fatalf("exchange: %d %q (want the backend to get the exchanged token only)", code, body)
	}
	kc.mu.Lock()
	f := kc.forms[0]
	kc.mu.Unlock()
	if f.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" || f.Get("subject_token") != teUserToken || f.Get("audience") != "target-client" {
		t.Errorf("token request built by the example's body expression: %v", f)
	}
	// The example caches by Authorization until the token's exp - 5 s.
	get(t, g.url("/exchange/items"), "Authorization", "Bearer "+teUserToken)
	if kc.calls() != 1 {
		t.Errorf("the same caller twice made %d token requests, want 1 (cached)", kc.calls())
	}
	_, body, _ = get(t, g.url("/exchange/items"), "Authorization", "Bearer "+teOtherToken)
	if backendSub(t, body) != "bob" || kc.calls() != 2 {
		t.Errorf("another caller: %q after %d token requests (want their own token, 2)", body, kc.calls())
	}
	// The access log carries the example's backend_oauth.* fields.
	line := lineWith(g.access.WaitFor(t, `backend_oauth.subject=bob`), "backend_oauth.subject=bob")
	if !strings.Contains(line, "backend_oauth.grant=token-exchange") || !strings.Contains(line, "backend_oauth.audience=target-client") {
		t.Errorf("access log: %s", line)
	}

	// client_credentials: one token for every caller (a constant key).
	before := kc.calls()
	for _, caller := range []string{teUserToken, teOtherToken} {
		code, body, _ := get(t, g.url("/client-credentials"), "Authorization", "Bearer "+caller)
		if code != 200 || backendSub(t, body) != "service-account" {
			t.Fatalf("client credentials: %d %q", code, body)
		}
	}
	if kc.calls() != before+1 {
		t.Errorf("client_credentials for two callers made %d token requests, want 1", kc.calls()-before)
	}

	// A token the server refuses: its answer goes back, nothing reaches
	// the backend, and it is not cached.
	for range 2 {
		code, body, _ = get(t, g.url("/exchange/items"), "Authorization", "Bearer "+teRevokedToken)
		if code != http.StatusBadRequest || strings.Contains(body, "authorization=") {
			t.Fatalf("refused token: %d %q", code, body)
		}
	}
	// No request without a token gets through with a caller-chosen one.
	code, body, _ = get(t, g.url("/exchange/items"))
	if code == 200 {
		t.Errorf("a request without a token reached the backend: %q", body)
	}

	all := g.access.String() + logs.String()
	for _, secret := range []string{"requester-secret", teUserToken, teOtherToken, teRevokedToken, "eyJ"} {
		if strings.Contains(all, secret) {
			t.Errorf("a log line carries the secret %q:\n%s", secret, all)
		}
	}
}

func TestExtAuthzCacheKeepsNothingPastItsTTL(t *testing.T) {
	kc := startKeycloakStandIn(t)
	kc.ttl = 3 * time.Second // the example's TTL, exp - 5 s, is already over
	be := authEcho(t)
	g := startExtAuthzExample(t, kc, hostOf(be), &testlog.Buffer{})
	for range 2 {
		if code, body, _ := get(t, g.url("/exchange"), "Authorization", "Bearer "+teUserToken); code != 200 {
			t.Fatalf("exchange: %d %q", code, body)
		}
	}
	if kc.calls() != 2 {
		t.Errorf("%d token requests, want 2: an answer whose TTL is over must not be cached", kc.calls())
	}
}

func TestExtAuthzCacheAndTransformationsBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/config.yaml"
	for _, tc := range []struct{ policy, want string }{
		{"extAuthz: {host: a:1, protocol: {http: {}}, cache: {ttl: 10s}}", `policies.extAuthz.cache: missing required key "key"`},
		{"extAuthz: {host: a:1, protocol: {http: {}}, cache: {key: [request.path]}}", `policies.extAuthz.cache: missing required key "ttl"`},
		{"extAuthz: {host: a:1, protocol: {http: {}}, cache: {key: request.path, ttl: 10s}}", `config.yaml:9:66: binds[0].listeners[0].routes[0].policies.extAuthz.cache.key: expected a list, got "request.path"`},
		{"extAuthz: {host: a:1, protocol: {http: {}}, cache: {key: [], ttl: 10s}}", `policies.extAuthz.cache.key: at least one key expression is required`},
		{"extAuthz: {host: a:1, protocol: {http: {}}, cache: {key: [request.path], ttl: 10s, maxEntires: 5}}", `policies.extAuthz.cache.maxEntires: unknown key`},
		{"extAuthz: {host: a:1, protocol: {http: {}}, cache: {key: ['request.path +'], ttl: 10s}}", `policies.extAuthz.cache.key[0]`},
		{"extAuthz: {host: a:1, protocol: {http: {}}, cache: {key: [request.path], ttl: 'response.code'}}", `policies.extAuthz.cache.ttl`},
		{"extAuthz: {host: a:1, protocol: {http: {body: 'form.encode(1)'}}}", `policies.extAuthz.protocol.http.body`},
		{"transformations: {request: {set: {authorization: 'extauthz.token +'}}}", `policies.transformations.request.set.authorization`},
		{"transformations: {request: {set: {'bad header': '\"x\"'}}}", `policies.transformations.request.set.bad header: not a header name`},
		{"transformations: {request: {body: '\"x\"'}}", `policies.transformations.request.body: not supported by tailgate yet`},
		{"transformations: {response: {set: {x: 'response.code'}}}", `policies.transformations.response.set.x`},
		{"transformations: {response: {body: '\"x\"'}}", `policies.transformations.response.body: not supported by tailgate yet`},
		{"transformations: {response: {remove: [':status']}}", `policies.transformations.response.remove[0]: not a header name`},
		{"transformations: {request: {remove: authorization}}", `policies.transformations.request.remove: expected a list`},
	} {
		os.WriteFile(path, []byte(simpleConfig(1, "127.0.0.1:1", tc.policy, "")), 0o600)
		err := Validate(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.policy, err, tc.want)
		}
	}
}
