package config

import (
	"strings"
	"testing"
	"time"
)

// A block a policy module declares itself: registered keys decode as
// strictly as config's own, at the levels they were registered for, and
// their Check runs (typed durations).
type testPause struct {
	Pos   Pos      `yaml:"-"`
	For   Duration `yaml:"for,required"`
	Quiet bool     `yaml:"quiet"`
}

func (p *testPause) Check(c *Check, path string) {
	c.Duration(p.Pos, path+".for", &p.For, false)
}

type testRouteOnly struct {
	Note string `yaml:"note"`
}

func init() {
	RegisterPolicy[testPause]("testPause", ListenerLevel)
	RegisterPolicy[testRouteOnly]("testRouteOnly", RouteLevel)
}

func policiesConfig(listener, route string) string {
	return `
binds:
- port: 3000
  listeners:
  - policies: {` + listener + `}
    routes:
    - policies: {` + route + `}
      backends: [{host: "localhost:1"}]
`
}

func TestRegisteredPolicyBlocksDecodeAtTheirLevels(t *testing.T) {
	f, err := Parse("ok.yaml", []byte(policiesConfig("testPause: {for: 2s}", "testPause: {for: 1s, quiet: true}, testRouteOnly: {note: hi}")))
	if err != nil {
		t.Fatal(err)
	}
	l := f.Binds[0].Listeners[0]
	if p := Block[testPause](l.Policies.Blocks, "testPause"); p == nil || p.For.D != 2*time.Second || p.Pos.Line != 5 {
		t.Errorf("listener testPause = %+v", p)
	}
	rp := l.Routes[0].Policies
	if p := Block[testPause](rp.Blocks, "testPause"); p == nil || p.For.D != time.Second || !p.Quiet {
		t.Errorf("route testPause = %+v", p)
	}
	if n := Block[testRouteOnly](rp.Blocks, "testRouteOnly"); n == nil || n.Note != "hi" {
		t.Errorf("route testRouteOnly = %+v", n)
	}
}

func TestRegisteredPolicyBlocksRefuseBadInputWithPathAndLine(t *testing.T) {
	for _, tc := range []struct{ listener, route, want string }{
		{"testRouteOnly: {note: hi}", "", `bad.yaml:5:16: binds[0].listeners[0].policies.testRouteOnly: unknown key`},
		{"", "testPause: {for: 1s, louder: true}", `bad.yaml:7:39: binds[0].listeners[0].routes[0].policies.testPause.louder: unknown key (expected one of: for, quiet)`},
		{"", "testPause: {for: soon}", `binds[0].listeners[0].routes[0].policies.testPause.for: expected a positive duration like 500ms, 10s or 1m, got "soon"`},
		{"", "testPause: {}", `routes[0].policies.testPause: missing required key "for"`},
		{"", "testpause: {for: 1s}", `routes[0].policies.testpause: unknown key (did you mean "testPause"?)`},
	} {
		msg := loadErr(t, policiesConfig(tc.listener, tc.route))
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%s / %s:\n got %s\nwant %s", tc.listener, tc.route, msg, tc.want)
		}
	}
}
