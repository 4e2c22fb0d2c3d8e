package cel

import (
	"strings"
	"testing"
)

// countingLazy is a Lazy that counts how often it is resolved.
type countingLazy struct {
	v     map[string]any
	reads int
}

func (c *countingLazy) Resolve() any { c.reads++; return c.v }

// A lazy variable is resolved only by rules that read it, is never
// replaced in the caller's Vars, and reads the same as a plain one,
// absent keys (an error, so a deny) included.
func TestLazyVariablesAreResolvedOnlyWhenRead(t *testing.T) {
	req := &countingLazy{v: map[string]any{"method": "GET", "headers": map[string]string{"x-team": "platform"}}}
	vars := Vars{"request": req, "source": map[string]any{"address": "127.0.0.1"}, "jwt": map[string]any{"sub": "alice"}, "extauthz": map[string]any{}}

	onClaims, err := CompileSet(Request, []Spec{{Kind: Allow, Expr: `jwt.sub == "alice"`, Where: "r0"}})
	if err != nil {
		t.Fatal(err)
	}
	if v := onClaims.Decide(vars); !v.Allowed || req.reads != 0 {
		t.Fatalf("rule on jwt.sub: %+v, request resolved %d times, want allowed and 0", v, req.reads)
	}

	onHeaders, err := CompileSet(Request, []Spec{
		{Kind: Require, Expr: `request.headers["x-team"] == "platform" && request.method == "GET"`, Where: "r0"},
		{Kind: Deny, Expr: `request.headers["x-missing"] == "1"`, Where: "r1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	v := onHeaders.Decide(vars)
	if v.Allowed || v.Reason != "deny rule errored" || v.Rule != "r1" {
		t.Errorf("deny on an absent header through a lazy request: %+v, want denied as erroring", v)
	}
	if req.reads == 0 {
		t.Error("rules on request.* did not resolve it")
	}
	if _, still := vars["request"].(*countingLazy); !still {
		t.Errorf("Decide replaced the caller's lazy value with %T", vars["request"])
	}

	// func() any is a lazy value too.
	vars["request"] = func() any { return req.v }
	ok, err := onHeaders.Rules[0].EvalBool(vars)
	if err != nil || !ok {
		t.Errorf("require through func() any: %v, %v", ok, err)
	}
}

// A rule whose worst case cel-go can bound within the limit runs without
// cost tracking; one that can cost more (a comprehension over an input
// of any size) still stops at the limit, and an erroring allow does not
// allow.
func TestCostLimitStopsCostlyRulesOnly(t *testing.T) {
	cheap, err := Compile(Request, "r0", `jwt.sub == "bench" && cidr("127.0.0.0/8").containsIP(source.address)`)
	if err != nil {
		t.Fatal(err)
	}
	if cheap.limited {
		t.Error("a rule with a small bounded cost is cost-tracked")
	}
	costly, err := Compile(Request, "r0", `jwt.groups.all(a, jwt.groups.all(b, a == b || true))`)
	if err != nil {
		t.Fatal(err)
	}
	if !costly.limited {
		t.Fatal("a nested comprehension over a claim is not cost-tracked")
	}
	groups := make([]any, 700)
	for i := range groups {
		groups[i] = "eng"
	}
	vars := Vars{"jwt": map[string]any{"groups": groups}}
	_, err = costly.EvalBool(vars)
	if err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Errorf("490,000 comparisons: err %v, want the cost limit", err)
	}
	set, err := CompileSet(Request, []Spec{{Kind: Allow, Expr: costly.Source, Where: "r0"}})
	if err != nil {
		t.Fatal(err)
	}
	if v := set.Decide(vars); v.Allowed {
		t.Errorf("a rule stopped at the cost limit allowed: %+v", v)
	}
	vars = Vars{"jwt": map[string]any{"groups": groups[:3]}}
	if ok, err := costly.EvalBool(vars); err != nil || !ok {
		t.Errorf("the same rule on three groups: %v, %v", ok, err)
	}
}
