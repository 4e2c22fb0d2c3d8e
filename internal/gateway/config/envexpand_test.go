package config

import (
	"strings"
	"testing"
)

func TestEnvironmentVariablesExpandInValues(t *testing.T) {
	t.Setenv("TG_PORT", "3030")
	t.Setenv("TG_HOST", "127.0.0.1")
	t.Setenv("TG_SECRET", "s3cr3t")
	src := `# $UNSET_IN_A_COMMENT is fine
binds:
- port: $TG_PORT
  listeners:
  - routes:
    - name: '{"$ref": "#/x", "$schema": "s", "cost": "$5"}'
      matches: [{path: {regex: "^/v1$"}}]
      policies:
        backendAuth: {key: "${TG_SECRET}-suffix"}
      backends:
      - host: $TG_HOST:8080
`
	f, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r := f.Binds[0].Listeners[0].Routes[0]
	if r.Name != `{"$ref": "#/x", "$schema": "s", "cost": "$5"}` {
		t.Errorf("lower-case $words and $5 were expanded: %q", r.Name)
	}
	if f.Binds[0].Port != 3030 || r.Backends[0].Host != "127.0.0.1:8080" || r.Policies.BackendAuth.Key.Inline != "s3cr3t-suffix" || *r.Matches[0].Path.Regex != "^/v1$" {
		t.Fatalf("expanded: port %d, host %q, key %q, regex %q", f.Binds[0].Port, r.Backends[0].Host, r.Policies.BackendAuth.Key.Inline, *r.Matches[0].Path.Regex)
	}
}

func TestUnsetEnvironmentVariableIsALoadError(t *testing.T) {
	src := `binds:
- port: 1
  listeners:
  - routes:
    - backends:
      - host: $TG_SURELY_UNSET_HOST:80
`
	_, err := Parse("t.yaml", []byte(src))
	want := `t.yaml:6:15: binds[0].listeners[0].routes[0].backends[0].host: environment variable TG_SURELY_UNSET_HOST is not set`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestQuotedEnvironmentValueStaysAStringAndErrorsHideIt(t *testing.T) {
	t.Setenv("TG_PORT", "3030")
	_, err := Parse("t.yaml", []byte("binds:\n- port: \"$TG_PORT\"\n  listeners: []\n"))
	if err == nil || !strings.Contains(err.Error(), `binds[0].port: expected an integer, got "$TG_PORT"`) || strings.Contains(err.Error(), "3030") {
		t.Fatalf("a quoted value was retyped: %v", err)
	}
}
