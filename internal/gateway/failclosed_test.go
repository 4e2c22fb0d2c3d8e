package gateway

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The rule decision table, through the real gateway, for rules that
// error at run time (issue 11): an erroring deny rule answers 403 in
// authorization and closes the connection in networkAuthorization, where
// agentgateway would let the caller through.
func TestErroringRulesDenyThroughTheGateway(t *testing.T) {
	be := echoBackend(t)
	p := newIDP(t, "k1")
	jwksFile := t.TempDir() + "/jwks.json"
	writeFile(t, jwksFile, p.jwks())
	type req struct {
		hdr  []string
		want int
	}
	withRole := func(role string) string {
		c := goodClaims()
		tok := p.token("k1", c)
		if role != "" {
			tok = p.tokenWith("k1", c, map[string]any{"role": role})
		}
		return "Bearer " + tok
	}
	routes := []struct {
		name  string
		rules string
		reqs  []req
	}{
		{"deny-header", `- deny: 'request.headers["x-user"] != "alice"'`, []req{
			{nil, 403}, {[]string{"X-User", "alice"}, 200}, {[]string{"X-User", "bob"}, 403},
		}},
		{"deny-role", `- deny: 'jwt.role != "admin"'`, []req{
			{nil, 403}, // no token: jwt is empty
			{[]string{"Authorization", withRole("")}, 403}, // a token without role
			{[]string{"Authorization", withRole("user")}, 403},
			{[]string{"Authorization", withRole("admin")}, 200},
		}},
		{"deny-non-bool", `- deny: 'request.headers'`, []req{{nil, 403}}},
		{"deny-guarded", `- deny: '"x-block" in request.headers && request.headers["x-block"] == "1"'`, []req{
			{nil, 200}, {[]string{"X-Block", "1"}, 403},
		}},
		{"deny-default", `- deny: 'default(request.headers["x-block"], "") == "1"'`, []req{
			{nil, 200}, {[]string{"X-Block", "1"}, 403},
		}},
		{"require-erroring", `- require: 'jwt.role == "admin"'`, []req{{nil, 403}}},
		{"allow-erroring-or-other", "- 'jwt.role == \"admin\"'\n- 'request.method == \"GET\"'", []req{{nil, 200}}},
		{"allow-erroring-only", `- 'jwt.role == "admin"'`, []req{{nil, 403}}},
	}
	port := freePort(t)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "binds:\n- port: %d\n  listeners:\n  - name: default\n    protocol: HTTP\n    routes:\n", port)
	for _, r := range routes {
		fmt.Fprintf(&cfg, `    - name: %s
      matches: [{path: {pathPrefix: /%s}}]
      policies:
        jwtAuth: {mode: optional, issuer: https://idp.example.com, audiences: [gateway], jwks: {file: %q}}
        authorization:
          rules:
%s
      backends: [{host: %s}]
`, r.name, r.name, jwksFile, indent(r.rules, "          "), hostOf(be))
	}
	g := startGateway(t, cfg.String(), port)
	for _, r := range routes {
		for _, q := range r.reqs {
			if code, _, _ := get(t, g.url("/"+r.name), q.hdr...); code != q.want {
				t.Errorf("%s %.40q: %d, want %d", r.name, q.hdr, code, q.want)
			}
		}
	}
	line := lineWith(g.access.WaitFor(t, "deny rule errored"), "deny rule errored")
	if !strings.Contains(line, "policy=authorization") || !strings.Contains(line, "rules[0]") {
		t.Errorf("the access log does not name the policy and rule: %s", line)
	}
}

func TestErroringNetworkRuleClosesTheConnection(t *testing.T) {
	be := echoBackend(t)
	for _, tc := range []struct {
		name, rule string
		refused    bool
	}{
		// On a host bind there is no source.tailscale: the rule errors.
		{"erroring deny", `deny: 'source.tailscale.user != "alice@example.com"'`, true},
		{"erroring deny on a tag", `deny: '!("tag:ci" in source.tailscale.tags)'`, true},
		{"guarded deny", `deny: 'has(source.tailscale) && source.tailscale.user != "alice@example.com"'`, false},
		{"deny with default", `deny: 'default(source.tailscale.user, "") == "mallory@example.com"'`, false},
		{"erroring allow", `allow: 'source.tailscale.user == "alice@example.com"'`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			g := startGateway(t, simpleConfig(port, hostOf(be), "", "networkAuthorization:\n  rules:\n  - "+tc.rule), port)
			refused := connectionRefused(t, port)
			if refused != tc.refused {
				t.Fatalf("connection refused = %v, want %v", refused, tc.refused)
			}
			if tc.refused {
				log := g.access.WaitFor(t, "connection denied")
				if !strings.Contains(log, "policy=networkAuthorization") {
					t.Errorf("log: %s", log)
				}
				if strings.HasPrefix(tc.rule, "deny") && !strings.Contains(log, `reason="deny rule errored"`) {
					t.Errorf("the log does not say the deny rule errored: %s", log)
				}
			}
		})
	}
}

// connectionRefused sends a request and reports whether the gateway
// closed the connection without an HTTP answer.
func connectionRefused(t *testing.T, port int) bool {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 12)
	n, err := conn.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("no answer and no close within 5 s")
	}
	if n > 0 && strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		return false
	}
	if n == 0 && err != nil {
		return true
	}
	t.Fatalf("unexpected answer %q (%v)", buf[:n], err)
	return false
}

func TestCheckWarnsAboutDenyRulesOnAbsentValues(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	path := t.TempDir() + "/config.yaml"
	writeFile(t, path, []byte(simpleConfig(port, hostOf(be), `
authorization:
  rules:
  - 'request.method == "GET"'
  - deny: 'request.headers["x-user"] != "alice"'`, `
networkAuthorization:
  rules:
  - deny: 'source.tailscale.user == "mallory@example.com"'`)))
	warnings, err := Check(path, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 2 {
		t.Fatalf("warnings = %q, want two", warnings)
	}
	for i, want := range [][]string{
		{"config.yaml:4: frontendPolicies.networkAuthorization.rules[0]", "reads source.tailscale"},
		{"config.yaml:", "binds[0].listeners[0].routes[0].policies.authorization.rules[1]", `reads request.headers["x-user"]`},
	} {
		for _, w := range want {
			if !strings.Contains(warnings[i], w) {
				t.Errorf("warning %d lacks %q: %s", i, w, warnings[i])
			}
		}
	}
	// The running gateway logs the same warnings.
	g := startGateway(t, simpleConfig(port, hostOf(be), `
authorization:
  rules:
  - deny: 'jwt.role != "admin"'`, ""), port)
	if ops := g.ops.String(); !strings.Contains(ops, "level=WARN") || !strings.Contains(ops, "reads jwt.role") {
		t.Errorf("ops log lacks the warning:\n%s", ops)
	}
}

// tokenWith is a token with claims c plus extra claims (a role).
func (p *idp) tokenWith(kid string, c claims, extra map[string]any) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.keys[kid]}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		p.t.Fatal(err)
	}
	s, err := jwt.Signed(sig).Claims(c).Claims(extra).Serialize()
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}
