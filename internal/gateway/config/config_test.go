package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestLoadSeedConfig(t *testing.T) {
	f, err := Load("testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rules := f.FrontendPolicies.NetworkAuthorization.Rules
	if len(rules) != 1 || rules[0].Kind != Allow || !strings.Contains(rules[0].Expr, "100.64.0.0/10") {
		t.Fatalf("rules = %+v", rules)
	}
	if rules[0].Pos.Line != 5 {
		t.Errorf("rule line = %d, want 5", rules[0].Pos.Line)
	}
	if f.Binds[0].Port != 3000 || f.Binds[0].Listeners[0].Routes[0].Backends[0].Host != "localhost:8080" {
		t.Fatalf("binds = %+v", f.Binds)
	}
}

func TestLoadFullFeatureConfig(t *testing.T) {
	src := `
config:
  adminAddr: 127.0.0.1:15000
  logging: {format: json}
tailnet:
  hostname: gw
  ephemeral: true
  authKey: {env: TS_AUTHKEY}
  tags: [tag:gateway]
binds:
- port: 3000
  tailnet: true
  listeners:
  - protocol: HTTP
    hostname: "*.example.com"
    policies:
      cors: {allowOrigins: ["*"]}
    routes:
    - name: api
      hostnames: [api.example.com]
      matches:
      - path: {pathPrefix: /api}
        method: POST
        headers: [{name: x-env, value: {exact: prod}}]
        query: [{name: debug, value: {regex: "^(1|true)$"}}]
      - path: {exact: /health}
      - path: {regex: "^/v[0-9]+/"}
      policies:
        jwtAuth:
          mode: strict
          issuer: https://idp.example.com
          audiences: [gw]
          jwks: {file: ./jwks.json}
        authorization:
          rules:
          - 'jwt.sub == "alice"'
          - deny: 'request.path.startsWith("/api/admin")'
          - require: 'has(jwt.sub)'
        extAuthz:
          host: 127.0.0.1:9000
          protocol: {http: {path: '"/check"', metadata: {user: 'response.headers["x-user"]'}}}
          failureMode: {denyWithStatus: 503}
        localRateLimit:
        - maxTokens: 10
          tokensPerFill: 1
          fillInterval: 1s
        timeout: {requestTimeout: 10s}
        requestHeaderModifier: {set: {x-gw: tailgate}, remove: [cookie]}
      backends:
      - host: 127.0.0.1:8080
        weight: 2
`
	f, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r := f.Binds[0].Listeners[0].Routes[0]
	if got := r.Policies.JWTAuth.Providers; len(got) != 1 || got[0].JWKS.File != "./jwks.json" {
		t.Fatalf("jwt providers = %+v", got)
	}
	kinds := []RuleKind{}
	for _, ru := range r.Policies.Authorization.Rules {
		kinds = append(kinds, ru.Kind)
	}
	if strings.Join([]string{string(kinds[0]), string(kinds[1]), string(kinds[2])}, ",") != "allow,deny,require" {
		t.Fatalf("kinds = %v", kinds)
	}
	if *r.Matches[0].Path.Prefix != "/api" || *r.Matches[1].Path.Exact != "/health" || *r.Matches[2].Path.Regex == "" {
		t.Fatalf("matches = %+v", r.Matches)
	}
	if r.Policies.ExtAuthz.FailureMode.DenyWithStatus != 503 {
		t.Fatalf("failure mode = %+v", r.Policies.ExtAuthz.FailureMode)
	}
	if !f.Binds[0].Tailnet || f.Tailnet.AuthKey.Env != "TS_AUTHKEY" {
		t.Fatalf("tailnet = %+v", f.Tailnet)
	}
}

func loadErr(t *testing.T, src string) string {
	t.Helper()
	_, err := Parse("bad.yaml", []byte(src))
	if err == nil {
		t.Fatalf("expected an error for:\n%s", src)
	}
	return err.Error()
}

func TestLoadRejectsUnknownKeyWithPathAndLine(t *testing.T) {
	msg := loadErr(t, `
binds:
- port: 3000
  listeners:
  - protocol: HTTP
    routes:
    - name: a
      polices: {}
      backends: [{host: "localhost:1"}]
`)
	want := `bad.yaml:8:7: binds[0].listeners[0].routes[0].polices: unknown key (did you mean "policies"?)`
	if msg != want {
		t.Fatalf("got  %s\nwant %s", msg, want)
	}
}

func TestLoadSaysNotSupportedYetForAgentgatewayKeys(t *testing.T) {
	msg := loadErr(t, `
binds:
- port: 3000
  listeners:
  - routes:
    - backends:
      - mcp:
          targets:
          - name: everything
            stdio: {cmd: npx}
            policies: {}
      policies:
        mcpGuardrails: {}
`)
	for _, want := range []string{
		"bad.yaml:11:13: binds[0].listeners[0].routes[0].backends[0].mcp.targets[0].policies: not supported by tailgate yet",
		"bad.yaml:13:9: binds[0].listeners[0].routes[0].policies.mcpGuardrails: not supported by tailgate yet",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "unknown key") {
		t.Errorf("an agentgateway key must not be reported as unknown:\n%s", msg)
	}
}

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	msg := loadErr(t, `
frontendPolicies:
  networkAuthorization:
    rules:
    - permit: "true"
binds:
- port: 70000
  listeners:
  - protocol: QUIC
    routes:
    - backends: [{host: "a:1"}]
      policies:
        jwtAuth: {mode: sometimes, issuer: x, jwks: "{}"}
        extAuthz: {host: "a:1"}
        timeout: {requestTimeout: soon}
`)
	var list ErrorList
	_, err := Parse("bad.yaml", []byte("x: 1\ny: 2\n"))
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("want 2 errors for 2 unknown keys, got %v", err)
	}
	for _, want := range []string{
		"rules[0].permit: unknown key (expected one of: allow, deny, require)",
		"binds[0].port: port must be between 1 and 65535, got 70000",
		`binds[0].listeners[0].protocol: expected HTTP or HTTPS, got "QUIC"`,
		`jwtAuth.mode: expected strict, optional or permissive, got "sometimes"`,
		"extAuthz.protocol: the default gRPC protocol is not supported by tailgate yet",
		`timeout.requestTimeout: expected a positive duration like 500ms, 10s or 1m, got "soon"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

func TestLoadRejectsWrongTypes(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"binds: {port: 1}", "binds: expected a list, got an object"},
		{"binds:\n- port: abc\n  listeners: []", `binds[0].port: expected an integer, got "abc"`},
		{"binds:\n- listeners: []", `binds[0]: missing required key "port"`},
		{"tailnet: {hostname: gw}", "tailnet: set exactly one of stateDir"},
		{"tailnet: {hostname: gw, ephemeral: true, authKey: {env: A, file: b}}", "set exactly one of env or file"},
		{"binds:\n- port: 1\n  tailnet: true\n  listeners: []", "a tailnet bind needs a top-level tailnet: block"},
		{"", "empty config file"},
		{"a: [", "invalid YAML"},
	} {
		if msg := loadErr(t, tc.src); !strings.Contains(msg, tc.want) {
			t.Errorf("%q: got %s, want %s", tc.src, msg, tc.want)
		}
	}
}

func TestLoadMissingFileNamesIt(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "does-not-exist.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzLoad(f *testing.F) {
	seed, _ := os.ReadFile("testdata/seed.yaml")
	f.Add(seed)
	f.Add([]byte("binds:\n- port: 1\n  listeners:\n  - routes:\n    - backends: [{host: a}]\n      policies: {localRateLimit: [{fillInterval: 1s, maxTokens: 1}], jwtAuth: {issuer: a, jwks: {url: x}}}"))
	f.Add([]byte("a: &x [*x]"))
	f.Add([]byte("frontendPolicies: {networkAuthorization: {rules: [x, {deny: y}, {require: z, allow: q}]}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse("fuzz.yaml", data)
	})
}
