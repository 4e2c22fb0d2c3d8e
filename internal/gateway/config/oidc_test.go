package config

import (
	"strings"
	"testing"
)

func TestLoadRefusesBadOIDCNamingPathAndLine(t *testing.T) {
	msg := loadErr(t, `
binds:
- port: 3000
  listeners:
  - routes:
    - backends: [{host: "localhost:1"}]
      policies:
        oidc:
          issuer: ftp://idp
          clientId: [a]
          redirectURI: http://localhost:3000/
          scopes: openid
          tokenEndpoint: http://idp/token
          cookieName: x
`)
	p := "binds[0].listeners[0].routes[0].policies.oidc"
	for _, want := range []string{
		"bad.yaml:10:21: " + p + ".clientId: expected a string, got a list",
		"bad.yaml:12:19: " + p + ".scopes: expected a list, got",
		"bad.yaml:14:11: " + p + ".cookieName: unknown key",
		"bad.yaml:9:11: " + p + `: missing required key "clientSecret"`,
		"bad.yaml:9:11: " + p + ".issuer: must be an absolute http(s) URL",
		"bad.yaml:9:11: " + p + ": authorizationEndpoint, tokenEndpoint and jwks must either all be set or all be omitted",
		"bad.yaml:9:11: " + p + ".redirectURI: path must be explicit and non-root",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

func TestLoadRefusesOIDCRedirectURIsAgentgatewayRefuses(t *testing.T) {
	for uri, want := range map[string]string{
		"/oauth/callback":   "must be an absolute http(s) URL",
		"http://u:p@gw/cb":  "must not contain userinfo",
		"http://gw/cb?x=1":  "must not contain query parameters",
		"http://gw/cb#f":    "must not contain a fragment",
		"http://gw/a/../cb": "path must not contain dot segments",
		"http://gw/a%2Fb":   "path must not contain encoded slash",
	} {
		msg := loadErr(t, `
binds:
- port: 3000
  listeners:
  - routes:
    - backends: [{host: "localhost:1"}]
      policies:
        oidc: {issuer: "http://idp", clientId: a, clientSecret: b, redirectURI: "`+uri+`"}
`)
		if !strings.Contains(msg, "policies.oidc.redirectURI: "+want) {
			t.Errorf("%s: got %s, want %s", uri, msg, want)
		}
	}
}
