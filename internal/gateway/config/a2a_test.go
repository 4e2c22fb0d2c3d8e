package config

import (
	"strings"
	"testing"
)

func TestLoadRefusesBadA2ANamingPathAndLine(t *testing.T) {
	msg := loadErr(t, `
binds:
- port: 3000
  listeners:
  - routes:
    - backends: [{host: "localhost:1"}]
      policies:
        a2a: true
    - backends: [{host: "localhost:1"}]
      policies:
        a2a: {rewriteCard: false}
`)
	for _, want := range []string{
		`bad.yaml:8:14: binds[0].listeners[0].routes[0].policies.a2a: expected an object, got "true"`,
		"bad.yaml:11:15: binds[0].listeners[0].routes[1].policies.a2a.rewriteCard: unknown key",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

func TestLoadA2AMarksTheRoute(t *testing.T) {
	f, err := Parse("a2a.yaml", []byte(`
binds:
- port: 3000
  listeners:
  - routes:
    - policies: {a2a: {}}
      backends: [{host: "localhost:9999"}]
    - policies: {a2a: null}
      backends: [{host: "localhost:9999"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	routes := f.Binds[0].Listeners[0].Routes
	if routes[0].Policies.A2A == nil || routes[1].Policies.A2A != nil {
		t.Errorf("a2a: {} must mark the route and a2a: null must not: %+v, %+v", routes[0].Policies.A2A, routes[1].Policies.A2A)
	}
}
