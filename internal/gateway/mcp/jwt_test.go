package mcp_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// mcpAuthorization sees the verified JWT: alice (group admins) sees every
// tool, bob only echo, and bob's call to another tool is refused.
func TestMCPAuthorizationUsesJWTClaims(t *testing.T) {
	jwks, token := jwtIssuer(t)
	g := startGateway(t, jwtRoute(jwks, `
        mcpAuthorization:
          rules:
          - '"admins" in jwt.groups'
          - 'mcp.tool.name == "echo"'`))
	alice := connect(t, g.url, &http.Client{Transport: setHeader{"Authorization", "Bearer " + token("alice", "admins")}})
	bob := connect(t, g.url, &http.Client{Transport: setHeader{"Authorization", "Bearer " + token("bob")}})
	if names := toolNames(t, alice); !contains(names, "pid") || !contains(names, "echo") {
		t.Errorf("alice (admins) should see every tool: %v", names)
	}
	if names := toolNames(t, bob); len(names) != 1 || names[0] != "echo" {
		t.Errorf("bob should see only echo: %v", names)
	}
	if got := callText(t, bob, "echo", map[string]any{"text": "b"}); got != "local:b" {
		t.Errorf("bob echo: %q", got)
	}
	_, err := bob.CallTool(t.Context(), &sdkCallPID)
	if err == nil || !strings.Contains(err.Error(), "denied by mcpAuthorization") {
		t.Errorf("bob calling pid: %v", err)
	}
	// The line follows the answer (the client does not wait for its write).
	g.access.WaitFor(t, "verdict=denied")
	if !strings.Contains(g.access.String(), "jwt.sub=bob") {
		t.Errorf("access log lacks the caller's jwt.sub:\n%s", g.access.String())
	}
}

// A tools/call on a route without mcpAuthorization is logged with its
// caller (address and verified JWT subject) as one that rules judge.
func TestToolCallLogNamesTheCaller(t *testing.T) {
	jwks, token := jwtIssuer(t)
	g := startGateway(t, jwtRoute(jwks, ""))
	carol := connect(t, g.url, &http.Client{Transport: setHeader{"Authorization", "Bearer " + token("carol")}})
	if got := callText(t, carol, "echo", map[string]any{"text": "c"}); got != "local:c" {
		t.Errorf("carol echo: %q", got)
	}
	var line string
	for _, l := range strings.Split(g.access.WaitFor(t, "msg=mcp method=tools/call"), "\n") {
		if strings.Contains(l, "msg=mcp method=tools/call") {
			line = l
		}
	}
	if !strings.Contains(line, "src=127.0.0.1") || !strings.Contains(line, "jwt.sub=carol") {
		t.Errorf("the call's access log line does not name its caller: %q", line)
	}
}

// jwtRoute is the config of an MCP route to the stdio target "local"
// whose jwtAuth trusts jwks, with more route policies (YAML) after it.
func jwtRoute(jwks, policies string) string {
	return localRoute(fmt.Sprintf(`
        jwtAuth:
          mode: strict
          issuer: https://idp.test
          audiences: [mcp]
          jwks: {file: %q}`, jwks) + policies)
}

// jwtIssuer is a JWKS file and a signer of tokens it verifies (issuer
// https://idp.test, audience mcp) for a subject and its groups.
func jwtIssuer(t *testing.T) (jwks string, token func(sub string, groups ...string) string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dir := t.TempDir()
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	jwks = filepath.Join(dir, "jwks.json")
	os.WriteFile(jwks, set, 0o600)
	sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	token = func(sub string, groups ...string) string {
		c := struct {
			jwt.Claims
			Groups []string `json:"groups"`
		}{jwt.Claims{Issuer: "https://idp.test", Audience: jwt.Audience{"mcp"}, Subject: sub, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, groups}
		s, err := jwt.Signed(sig).Claims(c).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return jwks, token
}
