package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
)

// request.* is built only when an expression reads it, but its value is
// the request as it was when the first policy asked for the variables:
// here authorization (which reads only source.*), before
// requestHeaderModifier overwrote X-User. The transformation after both
// still sees the caller's X-User, as it did when every variable was built
// at that first use.
func TestRulesSeeTheRequestAsItWasWhenTheVariablesWereFirstUsed(t *testing.T) {
	g := startBehindEcho(t, `
authorization:
  rules:
  - 'cidr("127.0.0.0/8").containsIP(source.address)'
requestHeaderModifier:
  set: {X-User: forged}
transformations:
  request:
    set:
      x-gw: 'request.headers["x-user"] + " " + request.method + " " + request.pathAndQuery'`, "")
	// With few headers the snapshot keeps them inline, with many in a
	// copy of the map: both.
	many := []string{"X-User", "alice"}
	for i := range 12 {
		many = append(many, fmt.Sprintf("X-Extra-%d", i), "v")
	}
	for _, hdr := range [][]string{{"X-User", "alice"}, many} {
		code, body, _ := get(t, g.url("/a/b?q=1"), hdr...)
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		if !strings.Contains(body, "x-gw=alice GET /a/b?q=1 ") || !strings.Contains(body, "x-user=forged") {
			t.Errorf("%d headers: backend saw %q, want x-gw from the caller's X-User and x-user=forged", len(hdr)/2, body)
		}
	}
}

// A rule on request.headers after one on jwt.* (which does not build
// request.*) sees the caller's headers; a caller without the header is
// refused by the same rule.
func TestRuleReadsHeadersAfterARuleOnClaims(t *testing.T) {
	p := newIDP(t, "k1")
	port := freePort(t)
	be := echoBackend(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), fmt.Sprintf(`
jwtAuth:
  mode: strict
  issuer: https://idp.example.com
  audiences: [gateway]
  jwks: {url: %s}
authorization:
  rules:
  - require: 'jwt.sub == "alice"'
  - 'request.headers["x-team"] == "platform" && request.uri.endsWith("/x?y=1")'`, p.srv.URL), ""), port)
	tok := "Bearer " + p.token("k1", goodClaims())
	if code, body, _ := get(t, g.url("/x?y=1"), "Authorization", tok, "X-Team", "platform"); code != http.StatusOK {
		t.Errorf("alice of platform: %d %s, want 200", code, body)
	}
	if code, _, _ := get(t, g.url("/x?y=1"), "Authorization", tok); code != http.StatusForbidden {
		t.Errorf("alice without X-Team: %d, want 403", code)
	}
	if code, _, _ := get(t, g.url("/x?y=1"), "Authorization", tok, "X-Team", "other"); code != http.StatusForbidden {
		t.Errorf("alice of another team: %d, want 403", code)
	}
}

// The access log's CEL fields read request.* after the policies did not:
// the variables the policies left unbuilt are built for the log.
func TestAccessLogReadsRequestThePoliciesDidNotRead(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), `
authorization:
  rules:
  - 'cidr("127.0.0.0/8").containsIP(source.address)'`, `accessLog:
  add:
    team: 'request.headers["x-team"]'
    where: 'request.uri'`), port)
	if code, _, _ := get(t, g.url("/logged?z=2"), "X-Team", "platform"); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	line := lineWith(g.access.WaitFor(t, "team="), "team=")
	if !strings.Contains(line, "team=platform") || !strings.Contains(line, fmt.Sprintf(`where="http://127.0.0.1:%d/logged?z=2"`, port)) {
		t.Errorf("access log line: %s", line)
	}
}

// request.* is taken before the first policy only when some expression of
// the config may read it; otherwise it is taken when something asks for
// it (MCP's variables, get) and is still the request's.
func TestRequestIsTakenOnlyWhenAnExpressionMayReadIt(t *testing.T) {
	for _, c := range []struct {
		rule  string
		reads bool
	}{
		{`cidr("127.0.0.0/8").containsIP(source.address)`, false},
		{`request.method == "GET"`, true},
		{`"x" in request.headers || true`, true},
	} {
		g := startBehindEcho(t, "authorization:\n  rules:\n  - '"+c.rule+"'", "")
		if got := g.snap.Load().readsRequest; got != c.reads {
			t.Errorf("rule %s: readsRequest = %v, want %v", c.rule, got, c.reads)
		}
		if code, body, _ := get(t, g.url("/x")); code != http.StatusOK {
			t.Errorf("rule %s: status %d: %s", c.rule, code, body)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "http://example.com/late?q=1", nil)
	rv := &requestVars{r: r, host: "example.com", lateRequest: true}
	x, err := cel.Compile(cel.Request, "test", `request.pathAndQuery == "/late?q=1" && request.host == "example.com"`)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := x.EvalBool(rv.lazy()); !ok || err != nil {
		t.Errorf("an expression reading a late request.*: %v, %v; want true", ok, err)
	}
	req, _ := rv.get()["request"].(map[string]any)
	if req["method"] != "GET" || req["path"] != "/late" {
		t.Errorf("get()[request] = %v, want the request's method and path", req)
	}
}
