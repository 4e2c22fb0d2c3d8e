package cel

import (
	"fmt"
	"strings"
	"testing"
)

// outcome of one rule in a decision-table row.
type outcome int

const (
	absent outcome = iota
	matches
	notMatching
	erroring
)

func (o outcome) String() string {
	return [...]string{"absent", "true", "false", "error"}[o]
}

func (o outcome) expr() string {
	switch o {
	case matches:
		return `request.method == "GET"`
	case notMatching:
		return `request.method == "POST"`
	default:
		return `request.headers["x-missing"] == "yes"` // no such key: an error
	}
}

// failClosedDecision is the documented order, written as the package doc
// says it: any deny true or erroring → deny; any require false or
// erroring → deny; any allow true → allow; else deny iff there are allow
// rules. It is agentgateway's order except for the erroring deny, which
// agentgateway counts as false (and so allows).
func failClosedDecision(allow, deny, require outcome) bool {
	if deny == matches || deny == erroring {
		return false
	}
	if require == notMatching || require == erroring {
		return false
	}
	if allow == matches {
		return true
	}
	return allow == absent
}

func TestDecisionTableEveryCombination(t *testing.T) {
	vars := Vars{"request": map[string]any{"method": "GET", "headers": map[string]string{}}, "source": map[string]any{}, "jwt": map[string]any{}, "extauthz": map[string]any{}}
	all := []outcome{absent, matches, notMatching, erroring}
	rows := 0
	for _, allow := range all {
		for _, deny := range all {
			for _, require := range all {
				var specs []Spec
				// Rules in the order deny, allow, require and reversed must
				// decide the same: order never matters.
				add := func(k Kind, o outcome) {
					if o != absent {
						specs = append(specs, Spec{Kind: k, Expr: o.expr(), Where: string(k)})
					}
				}
				add(Allow, allow)
				add(Deny, deny)
				add(Require, require)
				for _, order := range [][]Spec{specs, reversed(specs)} {
					s, err := CompileSet(Request, order)
					if err != nil {
						t.Fatal(err)
					}
					got := s.Decide(vars)
					want := failClosedDecision(allow, deny, require)
					if got.Allowed != want {
						t.Errorf("allow=%s deny=%s require=%s: allowed=%v (%s), want %v", allow, deny, require, got.Allowed, got.Reason, want)
					}
				}
				rows++
			}
		}
	}
	if rows != 64 {
		t.Fatalf("table has %d rows, want 64", rows)
	}
}

func reversed(s []Spec) []Spec {
	out := make([]Spec, len(s))
	for i := range s {
		out[len(s)-1-i] = s[i]
	}
	return out
}

func TestDecisionReasons(t *testing.T) {
	vars := Vars{"request": map[string]any{"method": "GET"}}
	for _, tc := range []struct {
		specs  []Spec
		reason string
		rule   string
	}{
		{nil, "no rules", ""},
		{[]Spec{{Allow, `true`, "r0"}}, "allow rule matched", "r0"},
		{[]Spec{{Allow, `false`, "r0"}}, "no allow rule matched", ""},
		{[]Spec{{Deny, `true`, "r0"}, {Allow, `true`, "r1"}}, "deny rule matched", "r0"},
		{[]Spec{{Require, `false`, "r0"}}, "require rule failed", "r0"},
		{[]Spec{{Deny, `false`, "r0"}}, "no deny or require rule matched", ""},
	} {
		s, err := CompileSet(Request, tc.specs)
		if err != nil {
			t.Fatal(err)
		}
		v := s.Decide(vars)
		if v.Reason != tc.reason || v.Rule != tc.rule {
			t.Errorf("%v: got %q/%q, want %q/%q", tc.specs, v.Reason, v.Rule, tc.reason, tc.rule)
		}
	}
}

func TestSeedRuleAdmitsTailnetAddressesOnly(t *testing.T) {
	s, err := CompileSet(Network, []Spec{{Allow, `cidr("100.64.0.0/10").containsIP(source.address)`, "seed"}})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"100.64.0.1": true, "100.127.255.254": true, "100.128.0.1": false,
		"127.0.0.1": false, "::1": false, "192.0.2.7": false, "not-an-ip": false,
	} {
		v := s.Decide(Vars{"source": map[string]any{"address": addr, "port": int64(1234)}})
		if v.Allowed != want {
			t.Errorf("%s: allowed=%v, want %v", addr, v.Allowed, want)
		}
	}
}

func TestRulesCanNameTailscaleTagsAndUsers(t *testing.T) {
	s, err := CompileSet(Network, []Spec{
		{Allow, `"tag:ci" in source.tailscale.tags`, "tags"},
		{Allow, `source.tailscale.user == "alice@example.com"`, "user"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := func(user string, tags ...string) Vars {
		return Vars{"source": map[string]any{"address": "100.64.0.2", "tailscale": map[string]any{"node": "n", "user": user, "tags": tags}}}
	}
	for name, tc := range map[string]struct {
		vars Vars
		want bool
	}{
		"tagged node":      {ts("tagged-devices", "tag:ci"), true},
		"other tag":        {ts("tagged-devices", "tag:prod"), false},
		"untagged user":    {ts("bob@example.com"), false},
		"allowed user":     {ts("alice@example.com"), true},
		"not on a tailnet": {Vars{"source": map[string]any{"address": "127.0.0.1"}}, false},
	} {
		if got := s.Decide(tc.vars).Allowed; got != tc.want {
			t.Errorf("%s: allowed=%v, want %v", name, got, tc.want)
		}
	}
}

func TestIPFunctionsHaveKubernetesSemantics(t *testing.T) {
	vars := Vars{"source": map[string]any{"address": "10.1.2.3"}}
	for _, expr := range []string{
		`ip("10.1.2.3") == ip(source.address)`,
		`isIP("::1") && !isIP("1.2.3") && !isIP("::ffff:1.2.3.4")`,
		`cidr("10.0.0.0/8").containsIP(ip(source.address))`,
		`cidr("10.0.0.0/8").containsCIDR("10.1.0.0/16")`,
		`cidr("10.0.0.0/8").containsCIDR(cidr("10.1.0.0/16"))`,
		`cidr("192.168.1.5/24").masked() == cidr("192.168.1.0/24")`,
		`cidr("192.168.1.0/24").prefixLength() == 24`,
		`ip("127.0.0.1").isLoopback() && ip("::1").family() == 6`,
		`isCIDR("10.0.0.1/8")`,
	} {
		x, err := Compile(Network, "t", expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if ok, err := x.EvalBool(vars); err != nil || !ok {
			t.Errorf("%s = %v, %v; want true", expr, ok, err)
		}
	}
}

func TestRuleUsingVariableOfAnotherPhaseIsALoadError(t *testing.T) {
	for _, tc := range []struct {
		phase Phase
		expr  string
		want  string
	}{
		{Network, `request.path == "/"`, `variable "request" is not available in the network phase (available: source)`},
		{Network, `jwt.sub == "a"`, `variable "jwt" is not available in the network phase`},
		{Request, `response.code == 200`, `variable "response" is not available in the request phase`},
		{Network, `source.adress == "1.2.3.4"`, `source.adress does not exist (known fields: address, port, rawAddress, rawPort, spiffeId, tailscale)`},
		{Request, `request.paht.startsWith("/")`, `request.paht does not exist`},
		{Network, `"tag:a" in source.tailscale.tag`, `source.tailscale.tag does not exist`},
		{Network, `cidr("100.64.0.0/100").containsIP(source.address)`, `invalid`},
		{Network, `source.address ==`, `Syntax error`},
		{Network, ``, `empty expression`},
	} {
		_, err := CompileSet(tc.phase, []Spec{{Allow, tc.expr, "frontendPolicies.networkAuthorization.rules[0] (line 5)"}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tc.expr, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), "rules[0] (line 5)") {
			t.Errorf("error does not name the rule: %v", err)
		}
	}
}

func TestCompileSetReportsAllBadRules(t *testing.T) {
	_, err := CompileSet(Network, []Spec{{Allow, "request.x", "r0"}, {Deny, "true", "r1"}, {Require, "jwt.a", "r2"}})
	if err == nil || !strings.Contains(err.Error(), "r0") || !strings.Contains(err.Error(), "r2") {
		t.Fatalf("err = %v", err)
	}
}

func TestNonBoolRuleCountsAsError(t *testing.T) {
	s, err := CompileSet(Request, []Spec{{Require, `request.method`, "r"}})
	if err != nil {
		t.Fatal(err)
	}
	v := s.Decide(Vars{"request": map[string]any{"method": "GET"}})
	if v.Allowed || v.Err == nil {
		t.Fatalf("verdict = %+v", v)
	}
}

func TestNativeValues(t *testing.T) {
	x, err := Compile(AuthzResponse, "m", `{"u": response.headers["x-user"], "n": [1, 2]}`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := x.Native(Vars{"response": map[string]any{"headers": map[string]string{"x-user": "alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "map[n:[1 2] u:alice]" {
		t.Fatalf("got %v", got)
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{`cidr("100.64.0.0/10").containsIP(source.address)`, `"tag:ci" in source.tailscale.tags`, `request.headers["a"].split(",")`, `[1,2].map(x, x*2)`, `ip("::1")`, `{"a": jwt.sub}`, `default(jwt.role, "") == "admin"`, `"a" in default(jwt.groups, [])`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		for p := Network; p <= AuthzResponse; p++ {
			x, err := Compile(p, "fuzz", src)
			if err == nil {
				_, _ = x.Eval(Vars{"source": map[string]any{"address": "127.0.0.1"}, "request": map[string]any{}, "jwt": map[string]any{}, "extauthz": map[string]any{}, "response": map[string]any{}})
			}
		}
	})
}
