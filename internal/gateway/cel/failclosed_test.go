package cel

import (
	"reflect"
	"strings"
	"testing"
)

// The rules the attacker probe used (issue 11), and their relatives in
// every phase: a rule that errors must never let the caller through.
func TestErroringRulesCountAgainstTheCaller(t *testing.T) {
	req := func(headers map[string]string, jwt map[string]any) Vars {
		return Vars{
			"source":   map[string]any{"address": "127.0.0.1", "port": int64(1)},
			"request":  map[string]any{"method": "GET", "path": "/", "headers": headers},
			"jwt":      jwt,
			"extauthz": map[string]any{},
		}
	}
	offTailnet := Vars{"source": map[string]any{"address": "127.0.0.1", "port": int64(1)}}
	onTailnet := func(user string) Vars {
		return Vars{"source": map[string]any{"address": "100.64.0.2", "port": int64(1),
			"tailscale": map[string]any{"node": "n", "user": user, "tags": []string{}}}}
	}
	mcpVars := func(kind, name string) Vars {
		v := req(map[string]string{}, map[string]any{})
		v["mcp"] = map[string]any{"method": "tools/call", kind: map[string]any{"name": name, "target": "t"}}
		return v
	}
	for _, tc := range []struct {
		name   string
		phase  Phase
		specs  []Spec
		vars   Vars
		allow  bool
		reason string
	}{
		{"deny on a role claim, no token", Request, []Spec{{Deny, `jwt.role != "admin"`, "r"}}, req(map[string]string{}, map[string]any{}), false, "deny rule errored"},
		{"deny on a role claim, token without role", Request, []Spec{{Deny, `jwt.role != "admin"`, "r"}}, req(map[string]string{}, map[string]any{"sub": "bob"}), false, "deny rule errored"},
		{"deny on a role claim, admin", Request, []Spec{{Deny, `jwt.role != "admin"`, "r"}}, req(map[string]string{}, map[string]any{"role": "admin"}), true, "no deny or require rule matched"},
		{"deny on a role claim, user", Request, []Spec{{Deny, `jwt.role != "admin"`, "r"}}, req(map[string]string{}, map[string]any{"role": "user"}), false, "deny rule matched"},
		{"deny on a header, no header", Request, []Spec{{Deny, `request.headers["x-user"] != "alice"`, "r"}}, req(map[string]string{}, map[string]any{}), false, "deny rule errored"},
		{"deny on a header, alice", Request, []Spec{{Deny, `request.headers["x-user"] != "alice"`, "r"}}, req(map[string]string{"x-user": "alice"}, map[string]any{}), true, "no deny or require rule matched"},
		{"deny beside a matching allow", Request, []Spec{{Allow, `true`, "a"}, {Deny, `jwt.role != "admin"`, "r"}}, req(map[string]string{}, map[string]any{}), false, "deny rule errored"},
		{"deny returning a non-bool", Request, []Spec{{Deny, `request.method`, "r"}}, req(map[string]string{}, map[string]any{}), false, "deny rule errored"},
		{"guarded deny, no header", Request, []Spec{{Deny, `"x-user" in request.headers && request.headers["x-user"] != "alice"`, "r"}}, req(map[string]string{}, map[string]any{}), true, "no deny or require rule matched"},
		{"deny with default(), no header", Request, []Spec{{Deny, `default(request.headers["x-block"], "") == "1"`, "r"}}, req(map[string]string{}, map[string]any{}), true, "no deny or require rule matched"},
		{"deny with default(), header set", Request, []Spec{{Deny, `default(request.headers["x-block"], "") == "1"`, "r"}}, req(map[string]string{"x-block": "1"}, map[string]any{}), false, "deny rule matched"},
		{"erroring allow does not allow", Request, []Spec{{Allow, `jwt.role == "admin"`, "a"}}, req(map[string]string{}, map[string]any{}), false, "no allow rule matched"},
		{"erroring allow beside a matching allow", Request, []Spec{{Allow, `jwt.role == "admin"`, "a"}, {Allow, `request.path == "/"`, "b"}}, req(map[string]string{}, map[string]any{}), true, "allow rule matched"},
		{"erroring require", Request, []Spec{{Require, `jwt.role == "admin"`, "q"}}, req(map[string]string{}, map[string]any{}), false, "require rule failed"},

		{"network deny on the tailnet user, off the tailnet", Network, []Spec{{Deny, `source.tailscale.user != "alice@example.com"`, "n"}}, offTailnet, false, "deny rule errored"},
		{"network deny on the tailnet user, alice", Network, []Spec{{Deny, `source.tailscale.user != "alice@example.com"`, "n"}}, onTailnet("alice@example.com"), true, "no deny or require rule matched"},
		{"network deny on a bad address", Network, []Spec{{Deny, `!cidr("100.64.0.0/10").containsIP(source.address)`, "n"}}, Vars{"source": map[string]any{"address": "not-an-ip"}}, false, "deny rule errored"},
		{"network allow on tags, off the tailnet", Network, []Spec{{Allow, `"tag:ci" in source.tailscale.tags`, "n"}}, offTailnet, false, "no allow rule matched"},

		{"mcp deny on a tool name, asked for a prompt", MCP, []Spec{{Deny, `mcp.tool.name == "delete"`, "m"}}, mcpVars("prompt", "p"), false, "deny rule errored"},
		{"mcp guarded deny, asked for a prompt", MCP, []Spec{{Deny, `has(mcp.tool) && mcp.tool.name == "delete"`, "m"}}, mcpVars("prompt", "p"), true, "no deny or require rule matched"},
		{"mcp guarded deny, the tool", MCP, []Spec{{Deny, `has(mcp.tool) && mcp.tool.name == "delete"`, "m"}}, mcpVars("tool", "delete"), false, "deny rule matched"},
	} {
		s, err := CompileSet(tc.phase, tc.specs)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		v := s.Decide(tc.vars)
		if v.Allowed != tc.allow || v.Reason != tc.reason {
			t.Errorf("%s: allowed=%v reason=%q err=%v; want allowed=%v reason=%q", tc.name, v.Allowed, v.Reason, v.Err, tc.allow, tc.reason)
		}
		if v.Reason == "deny rule errored" && (v.Err == nil || v.Rule == "") {
			t.Errorf("%s: an erroring deny must carry its rule and error: %+v", tc.name, v)
		}
	}
}

func TestDefaultSwallowsOnlyMissingValues(t *testing.T) {
	vars := Vars{
		"request": map[string]any{"method": "GET", "headers": map[string]string{"a": "1"}},
		"jwt":     map[string]any{"groups": []string{"x"}},
		"source":  map[string]any{}, "extauthz": map[string]any{},
	}
	for expr, want := range map[string]string{
		`default(request.headers["b"], "none")`: "none",
		`default(request.headers["a"], "none")`: "1",
		`default(jwt.role, "anonymous")`:        "anonymous",
		`default(jwt.realm.role, "anonymous")`:  "anonymous",
		`default(jwt.groups[3], "none")`:        "none",
		`default(source.tailscale.user, "")`:    "",
	} {
		x, err := Compile(Request, "t", expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		got, err := x.EvalString(vars)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", expr, got, err, want)
		}
	}
	// A type error is a bug in the rule, not an absent value: not hidden.
	x, err := Compile(Request, "t", `default(int(request.method), 0) == 0`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.EvalBool(vars); err == nil {
		t.Error("default() swallowed a conversion error")
	}
}

func TestMayBeAbsentFindsUnguardedReads(t *testing.T) {
	for _, tc := range []struct {
		phase Phase
		expr  string
		want  []string
	}{
		{Request, `jwt.role != "admin"`, []string{"jwt.role"}},
		{Request, `request.headers["x-user"] != "alice"`, []string{`request.headers["x-user"]`}},
		{Request, `request.headers["x-user"] == jwt.sub`, []string{`request.headers["x-user"]`, "jwt.sub"}},
		{Request, `jwt.realm.roles.exists(r, r == "admin")`, []string{"jwt.realm"}},
		{Request, `"admin" in jwt.groups`, []string{"jwt.groups"}},
		{Request, `jwt.groups[0] == "a"`, []string{"jwt.groups"}},
		{Request, `has(jwt.groups) && jwt.groups[0] == "a"`, []string{`jwt.groups[0]`}},
		{Request, `request.headers[request.path] == "x"`, []string{"request.headers[...]"}},
		{Request, `request.method == "DELETE" && request.path.startsWith("/admin")`, nil},
		{Request, `has(jwt.role) && jwt.role != "admin"`, nil},
		{Request, `"x-user" in request.headers && request.headers["x-user"] != "alice"`, nil},
		{Request, `default(jwt.role, "") != "admin"`, nil},
		{Request, `size(jwt) == 0`, nil},
		{Request, `extauthz.user == "bob"`, []string{"extauthz.user"}},
		{Network, `source.tailscale.user != "alice@example.com"`, []string{"source.tailscale"}},
		{Network, `has(source.tailscale) && !("tag:ci" in source.tailscale.tags)`, nil},
		{Network, `!cidr("100.64.0.0/10").containsIP(source.address) || source.port == 0`, nil},
		{MCP, `mcp.tool.name == "delete"`, []string{"mcp.tool"}},
		{MCP, `mcp.method == "tools/call"`, nil},
		{MCP, `has(mcp.resource) && mcp.resource.uri.startsWith("file:")`, nil},
	} {
		x, err := Compile(tc.phase, "t", tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if got := x.MayBeAbsent(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: MayBeAbsent = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

func TestWarningsNameTheDenyRule(t *testing.T) {
	where := "config.yaml:12: binds[0].listeners[0].routes[0].policies.authorization.rules[1]"
	s, err := CompileSet(Request, []Spec{
		{Allow, `jwt.sub == "alice"`, "config.yaml:11: ...rules[0]"},
		{Deny, `jwt.role != "admin"`, where},
		{Require, `jwt.aud == "gw"`, "config.yaml:13: ...rules[2]"},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := s.Warnings()
	if len(w) != 1 {
		t.Fatalf("warnings = %q, want one, for the deny rule", w)
	}
	for _, want := range []string{where, `deny rule "jwt.role != \"admin\""`, "reads jwt.role", "has(", "default(jwt.role"} {
		if !strings.Contains(w[0], want) {
			t.Errorf("warning lacks %q: %s", want, w[0])
		}
	}
}
