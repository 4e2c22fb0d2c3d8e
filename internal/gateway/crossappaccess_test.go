package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tailgate-dev/tailgate/internal/testlog"
)

// xaaStandIn is the Keycloak of agentgateway's cross-app-access/keycloak
// example, both legs at one token endpoint: as agent-client it trades
// alice's ID token for an ID-JAG naming the resource, as resource-client
// it trades that ID-JAG for an access token. It also serves the realm's
// JWKS, for jwtAuth.
type xaaStandIn struct {
	*httptest.Server
	idp   *idp
	mu    sync.Mutex
	forms []url.Values
	users []string
	// idpAnswer, when set, replaces the identity provider's answer.
	idpAnswer string
	// resourceStatus, when set, is the resource server's error status.
	resourceStatus int
	issued         int
}

const (
	xaaIDJAG         = "id-jag-for-alice-4c1d"
	xaaResourceToken = "resource-token-alice-8e2f"
)

func startXAAStandIn(t *testing.T) *xaaStandIn {
	x := &xaaStandIn{idp: newIDP(t, "k1")}
	x.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/certs") {
			w.Write(x.idp.jwks())
			return
		}
		r.ParseForm()
		user, pass, _ := r.BasicAuth()
		x.mu.Lock()
		x.forms = append(x.forms, r.PostForm)
		x.users = append(x.users, user)
		idpAnswer, resourceStatus := x.idpAnswer, x.resourceStatus
		x.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path != "/realms/idjag-demo/protocol/openid-connect/token":
			http.NotFound(w, r)
		case user == "agent-client" && pass == "agent-secret":
			if idpAnswer != "" {
				fmt.Fprint(w, idpAnswer)
				return
			}
			fmt.Fprintf(w, `{"access_token":%q,"issued_token_type":"urn:ietf:params:oauth:token-type:id-jag","token_type":"N_A","expires_in":300}`, xaaIDJAG)
		case user == "resource-client" && pass == "resource-secret" && r.PostForm.Get("assertion") == xaaIDJAG:
			if resourceStatus != 0 {
				w.WriteHeader(resourceStatus)
				fmt.Fprint(w, `{"error":"invalid_grant"}`)
				return
			}
			fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":300}`, xaaResourceToken)
		default:
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
		}
	}))
	t.Cleanup(x.Close)
	return x
}

func (x *xaaStandIn) calls() ([]url.Values, []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]url.Values(nil), x.forms...), append([]string(nil), x.users...)
}

// aliceIDToken is a new ID token of alice's from the stand-in's realm,
// for agent-client (each has its own jti, so none is a cache hit).
func (x *xaaStandIn) aliceIDToken() string {
	now := time.Now()
	x.mu.Lock()
	x.issued++
	jti := fmt.Sprint(x.issued)
	x.mu.Unlock()
	return x.idp.token("k1", claims{Claims: jwt.Claims{
		ID: jti, Issuer: x.URL + "/realms/idjag-demo", Subject: "alice", Audience: jwt.Audience{"agent-client"},
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now),
	}})
}

func startCrossAppAccessExample(t *testing.T, x *xaaStandIn, backend string, logs *testlog.Buffer) *testGateway {
	t.Setenv("KC_AGENT_SECRET", "agent-secret")
	t.Setenv("KC_RESOURCE_SECRET", "resource-secret")
	return startExample(t, "traffic-cross-app-access/keycloak/gateway.yaml",
		[]string{"http://localhost:8480", x.URL, "localhost:8480", hostOf(x.Server), "localhost:9000", backend}, debugLogs(logs))
}

func TestCrossAppAccessKeycloakExampleSendsTheResourceToken(t *testing.T) {
	x := startXAAStandIn(t)
	be := authEcho(t)
	logs := &testlog.Buffer{}
	g := startCrossAppAccessExample(t, x, hostOf(be), logs)
	idToken := x.aliceIDToken()

	for range 2 {
		code, body, _ := get(t, g.url("/todos"), "Authorization", "Bearer "+idToken)
		if code != 200 || !strings.HasPrefix(body, "authorization=Bearer "+xaaResourceToken+" ") {
			t.Fatalf("cross-app request: %d %q (want the resource token only)", code, body)
		}
	}
	forms, users := x.calls()
	if len(forms) != 2 {
		t.Fatalf("%d token requests for two calls, want 2 (one exchange, then cached)", len(forms))
	}
	leg1 := url.Values{
		"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":        {idToken},
		"subject_token_type":   {"urn:ietf:params:oauth:token-type:id_token"},
		"requested_token_type": {"urn:ietf:params:oauth:token-type:id-jag"},
		"audience":             {"https://resource.idjag.demo"},
		"scope":                {"todos.read"},
	}
	leg2 := url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"assertion":  {xaaIDJAG},
		"scope":      {"todos.read"},
	}
	if forms[0].Encode() != leg1.Encode() || users[0] != "agent-client" {
		t.Errorf("identity provider request (%s):\n got %s\nwant %s", users[0], forms[0].Encode(), leg1.Encode())
	}
	if forms[1].Encode() != leg2.Encode() || users[1] != "resource-client" {
		t.Errorf("resource server request (%s):\n got %s\nwant %s", users[1], forms[1].Encode(), leg2.Encode())
	}
	all := g.access.String() + logs.String()
	for _, secret := range []string{idToken, xaaIDJAG, xaaResourceToken, "agent-secret", "resource-secret"} {
		if strings.Contains(all, secret) {
			t.Errorf("a log line carries a secret %q", secret)
		}
	}
}

func TestCrossAppAccessFailuresDeny(t *testing.T) {
	x := startXAAStandIn(t)
	be := authEcho(t)
	g := startCrossAppAccessExample(t, x, hostOf(be), &testlog.Buffer{})
	for _, tc := range []struct {
		name      string
		idpAnswer string
		resource  int
		want      int
		reason    string
	}{
		{"the IdP issues an access token, not an ID-JAG", `{"access_token":"x","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}`, 0, 500, "did not issue an ID-JAG"},
		{"the ID-JAG claims to be a bearer token", `{"access_token":"x","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:id-jag"}`, 0, 500, "token_type is not N_A"},
		{"the resource server refuses the ID-JAG", "", 400, 500, "chained token exchange: token endpoint answered 400 invalid_grant"},
	} {
		x.mu.Lock()
		x.idpAnswer, x.resourceStatus = tc.idpAnswer, tc.resource
		x.mu.Unlock()
		code, body, _ := get(t, g.url("/todos"), "Authorization", "Bearer "+x.aliceIDToken())
		if code != tc.want || strings.Contains(body, "authorization=") {
			t.Errorf("%s: %d %q, want %d and no backend", tc.name, code, body, tc.want)
		}
		if line := lineWith(g.access.WaitFor(t, tc.reason), tc.reason); !strings.Contains(line, "policy=backendAuth") {
			t.Errorf("%s: access log %q", tc.name, line)
		}
	}
	// jwtAuth still guards the route: no ID token, no exchange.
	before, _ := x.calls()
	if code, _, _ := get(t, g.url("/todos")); code == 200 {
		t.Error("a request without a token reached the backend")
	}
	if after, _ := x.calls(); len(after) != len(before) {
		t.Error("a request without a token caused a token exchange")
	}
}

func TestCrossAppAccessBadConfig(t *testing.T) {
	path := t.TempDir() + "/config.yaml"
	const endpoints = `identityProvider: {host: a:1, clientAuth: {clientId: c, clientSecret: s}}
resourceAuthorizationServer: {host: b:1, clientAuth: {clientId: d, clientSecret: s}}
`
	for _, tc := range []struct{ cfg, want string }{
		{endpoints, `policies.backendAuth.crossAppAccess: missing required key "audience"`},
		{"audience: x\nidentityProvider: {host: a:1, clientAuth: {clientId: c, clientSecret: s}}\n", `crossAppAccess: missing required key "resourceAuthorizationServer"`},
		{"audience: x\nidentityProvider: {host: a:1}\nresourceAuthorizationServer: {host: b:1, clientAuth: {clientId: d, clientSecret: s}}\n", `crossAppAccess.identityProvider: missing required key "clientAuth"`},
		{endpoints + "audience: x\nscopes: todos.read\n", `crossAppAccess.scopes: expected a list, got "todos.read"`},
		{endpoints + "audience: x\nsubjectToken: {source: {header: {name: x}, expression: 'jwt.sub'}}\n", `crossAppAccess.subjectToken.source: set one of header or expression`},
		{endpoints + "audience: x\nsubjectToken: {source: {expression: 'jwt.rawToken.unredacted() +'}}\n", `crossAppAccess.subjectToken.source.expression`},
		{endpoints + "audience: x\nsubjectToken: {source: {cookie: {name: s}}}\n", `crossAppAccess.subjectToken.source.cookie: not supported by tailgate yet`},
		{endpoints + "audience: x\nsubjectToken: {tokenType: urn:ietf:params:oauth:token-type:id-jag}\n", `the subject token cannot itself be an ID-JAG`},
		{endpoints + "audience: x\nidentityProviders: []\n", `crossAppAccess.identityProviders: unknown key`},
	} {
		policy := "backendAuth:\n  crossAppAccess:\n" + indent(tc.cfg, "    ")
		writeFile(t, path, []byte(simpleConfig(1, "127.0.0.1:1", policy, "")))
		err := Validate(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.cfg, err, tc.want)
		}
	}
}
