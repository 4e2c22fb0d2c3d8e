// Package cel is the gateway's CEL: it compiles and evaluates the rules
// of networkAuthorization, authorization and mcpAuthorization, and the
// CEL values of extAuthz. (Only this package imports cel-go, as celgo.)
//
// # Phases
//
// A rule runs in a phase, and a phase decides which variables exist:
//
//	Network   source.*                                 (per connection, before HTTP)
//	Request   source.*, request.*, jwt.*, extauthz.*   (per request, after jwtAuth/extAuthz)
//	AuthzResponse  Request's plus response.*           (extAuthz metadata expressions)
//	MCP       Request's plus mcp.*                     (mcpAuthorization, per tool/prompt/resource)
//
// In the MCP phase, mcp.method is the JSON-RPC method, and exactly one of
// mcp.tool, mcp.prompt or mcp.resource is set ({name, target}; resources
// also have uri). A rule on a post-call value (response.*) is a load
// error: mcpAuthorization decides before the call, and filters lists.
//
// Every expression is parsed and type-checked when the config is
// compiled. A rule that names a variable its phase does not have (for
// example `request.path` in networkAuthorization), or a field of
// source/request that does not exist, is a load error naming the rule.
// agentgateway instead accepts such a rule and denies every request at
// run time (agentgateway#3092).
//
// # Decisions
//
// A Set decides in agentgateway's order, but fails closed:
//
//  1. no rules: allow;
//  2. any deny rule true or erroring: deny;
//  3. any require rule false or erroring: deny;
//  4. any allow rule true: allow;
//  5. otherwise deny if there are allow rules, allow if there are none.
//
// A rule that errors at run time (a missing header, a jwt claim that is
// absent, a result that is not a bool) always counts against the caller:
// an erroring allow rule does not allow, and an erroring deny or require
// rule denies. agentgateway treats every erroring rule as false, so its
// `deny: 'jwt.role != "admin"'` lets through a caller whose token has no
// role claim; tailgate refuses that caller. Rules that are meant to
// tolerate a missing value say so with has() or default() (see Warnings).
//
// # Functions
//
// Standard CEL, agentgateway's default(value, fallback), the strings,
// math and encoders extensions, and the
// IP/CIDR library with Kubernetes CEL semantics (cel-go's ext.Network,
// which mirrors k8s.io/apiserver's library without its dependencies):
// ip(), isIP(), cidr(), isCIDR(), cidr(...).containsIP(str|ip),
// containsCIDR, prefixLength, masked, ip(...).family(), isLoopback()...
package cel

import (
	"errors"
	"fmt"
	"strings"

	celgo "github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// Phase is when an expression runs, and so which variables it may use.
type Phase int

const (
	Network Phase = iota
	Request
	AuthzResponse
	MCP
	// Log is after the response: the access log's filter and fields.
	Log
)

func (p Phase) String() string {
	switch p {
	case Network:
		return "network"
	case Request:
		return "request"
	case AuthzResponse:
		return "extAuthz response"
	case MCP:
		return "mcpAuthorization"
	case Log:
		return "access log"
	}
	return "unknown"
}

// Kind is how a rule takes part in a decision.
type Kind string

const (
	Allow   Kind = "allow"
	Deny    Kind = "deny"
	Require Kind = "require"
)

// Fields known on the structured variables. A select of any other field
// is a load error: it could never be true and would silently deny.
var (
	sourceFields = map[string]bool{
		"address": true, "port": true, "rawAddress": true, "rawPort": true,
		"tailscale": true, "spiffeId": true,
	}
	tailscaleFields = map[string]bool{"node": true, "user": true, "tags": true, "caps": true}
	requestFields   = map[string]bool{
		"method": true, "uri": true, "host": true, "scheme": true, "path": true,
		"pathAndQuery": true, "version": true, "headers": true,
	}
	responseFields = map[string]bool{"code": true, "headers": true, "body": true}
	mcpFields      = map[string]bool{"method": true, "tool": true, "prompt": true, "resource": true}
	backendFields  = map[string]bool{"name": true, "type": true, "protocol": true}
)

func phaseVariables(p Phase) []string {
	switch p {
	case Network:
		return []string{"source"}
	case Request:
		return []string{"source", "request", "jwt", "extauthz"}
	case MCP:
		return []string{"source", "request", "jwt", "extauthz", "mcp"}
	case Log:
		return []string{"source", "request", "jwt", "extauthz", "response", "backend"}
	default:
		return []string{"source", "request", "jwt", "extauthz", "response"}
	}
}

// allVariables are every variable any phase has; an expression naming one
// its phase lacks gets a message that says which phase it belongs to.
var allVariables = []string{"source", "request", "jwt", "extauthz", "response", "mcp", "backend"}

var envs [Log + 1]*celgo.Env

func init() {
	for p := Network; p <= Log; p++ {
		opts := []celgo.EnvOption{
			ext.Strings(), ext.Math(), ext.Encoders(), ext.Network(),
			celgo.CrossTypeNumericComparisons(true), defaultFunction(), library(), unredactedFunction(),
		}
		for _, v := range phaseVariables(p) {
			opts = append(opts, celgo.Variable(v, celgo.MapType(celgo.StringType, celgo.DynType)))
		}
		env, err := celgo.NewEnv(opts...)
		if err != nil {
			panic(fmt.Sprintf("rules: build CEL env for %s phase: %v", p, err))
		}
		envs[p] = env
	}
}

// Expression is one compiled CEL expression.
type Expression struct {
	// Where names the expression for errors and logs, e.g.
	// "binds[0].listeners[0].routes[1].policies.authorization.rules[2] (line 31)".
	Where  string
	Source string
	prog   celgo.Program
	// limited: prog tracks its cost and stops at costLimit.
	limited bool
	// absent are the reads of values that may be absent, unguarded by
	// has() or default() (see mayBeAbsent).
	absent []string
}

// MayBeAbsent lists what the expression reads that a caller may not have
// (e.g. jwt.role, request.headers["x-user"]) without has() or default().
// When one is absent the expression errors.
func (x *Expression) MayBeAbsent() []string { return x.absent }

// CompileError is a rule that does not compile, with where it is.
type CompileError struct {
	Where string
	Expr  string
	Err   error
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("%s: rule %q: %v", e.Where, e.Expr, e.Err)
}

func (e *CompileError) Unwrap() error { return e.Err }

// Compile parses and type-checks src for phase.
func Compile(phase Phase, where, src string) (*Expression, error) {
	if strings.TrimSpace(src) == "" {
		return nil, &CompileError{Where: where, Expr: src, Err: errors.New("empty expression")}
	}
	env := envs[phase]
	checked, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, &CompileError{Where: where, Expr: src, Err: explain(phase, iss.Err())}
	}
	if err := checkFields(phase, checked.NativeRep().Expr()); err != nil {
		return nil, &CompileError{Where: where, Expr: src, Err: err}
	}
	// A cost limit keeps one bad rule (a huge comprehension) from stalling
	// the gateway; real rules cost a few hundred units. Tracking the cost
	// wraps every step of every evaluation, so it is installed only when
	// the rule's worst case, as cel-go estimates it before running (with
	// every input of unknown size), could exceed the limit: a rule whose
	// estimate is within it can never hit it, and keeps its meaning.
	popts := []celgo.ProgramOption{celgo.EvalOptions(celgo.OptOptimize)}
	if needsCostLimit(env, checked) {
		popts = append(popts, celgo.CostLimit(costLimit))
	}
	prog, err := env.Program(checked, popts...)
	if err != nil {
		return nil, &CompileError{Where: where, Expr: src, Err: err}
	}
	return &Expression{Where: where, Source: src, prog: prog, limited: len(popts) > 1, absent: mayBeAbsent(checked.NativeRep().Expr())}, nil
}

// costLimit is the most a rule may cost in one evaluation, in cel-go's
// cost units (about one per step; see Compile). Real rules cost a few
// hundred units. Tracked evaluation runs at about a microsecond a unit in
// cel-go v0.31 (a nested comprehension that hits 1,000,000 took 0.9 s of
// CPU; 100,000 takes 70 ms), and a caller can often choose an input's
// size (a header, a claim list): the limit is what one request can make
// the gateway spend on one rule.
const costLimit = 100_000

// needsCostLimit says whether checked's estimated worst-case cost may
// exceed costLimit (or cannot be estimated).
func needsCostLimit(env *celgo.Env, checked *celgo.Ast) bool {
	est, err := env.EstimateCost(checked, inputSizes{})
	return err != nil || est.Max > costLimit
}

// inputSizes bounds the size of the few inputs the gateway builds itself
// and knows the length of; every other input (a header, a claim, a path)
// may be of any size, so a rule that iterates over one, or does work per
// character of one, has an unbounded worst case and keeps the limit.
type inputSizes struct{}

// maxAddressLen bounds source.address and source.rawAddress, a peer's IP
// address as netip.Addr.String gives it (39 characters for IPv6, plus a
// zone, which an interface name keeps short).
const maxAddressLen = 64

func (inputSizes) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if p := n.Path(); len(p) == 2 && p[0] == "source" && (p[1] == "address" || p[1] == "rawAddress") {
		return &checker.SizeEstimate{Min: 0, Max: maxAddressLen}
	}
	return nil
}

func (inputSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// explain turns "undeclared reference to 'request'" into a sentence that
// says why: the variable belongs to another phase.
func explain(phase Phase, err error) error {
	msg := err.Error()
	for _, v := range allVariables {
		if strings.Contains(msg, "undeclared reference to '"+v+"'") {
			return fmt.Errorf("variable %q is not available in the %s phase (available: %s)", v, phase, strings.Join(phaseVariables(phase), ", "))
		}
	}
	return errors.New(strings.TrimSpace(msg))
}

// checkFields walks the expression for selects like source.adress and
// request.paht that could never resolve.
func checkFields(phase Phase, e ast.Expr) error {
	var found error
	var visit func(ast.Expr)
	visit = func(e ast.Expr) {
		if found != nil || e == nil {
			return
		}
		switch e.Kind() {
		case ast.SelectKind:
			sel := e.AsSelect()
			op := sel.Operand()
			if op.Kind() == ast.IdentKind {
				if known := fieldsOf(op.AsIdent()); known != nil && !known[sel.FieldName()] {
					found = fmt.Errorf("%s.%s does not exist (known fields: %s)", op.AsIdent(), sel.FieldName(), keys(known))
					return
				}
			}
			if op.Kind() == ast.SelectKind && op.AsSelect().Operand().Kind() == ast.IdentKind &&
				op.AsSelect().Operand().AsIdent() == "source" && op.AsSelect().FieldName() == "tailscale" &&
				!tailscaleFields[sel.FieldName()] {
				found = fmt.Errorf("source.tailscale.%s does not exist (known fields: %s)", sel.FieldName(), keys(tailscaleFields))
				return
			}
			visit(op)
		case ast.CallKind:
			c := e.AsCall()
			if c.IsMemberFunction() {
				visit(c.Target())
			}
			for _, a := range c.Args() {
				visit(a)
			}
		case ast.ListKind:
			for _, el := range e.AsList().Elements() {
				visit(el)
			}
		case ast.MapKind:
			for _, en := range e.AsMap().Entries() {
				me := en.AsMapEntry()
				visit(me.Key())
				visit(me.Value())
			}
		case ast.ComprehensionKind:
			c := e.AsComprehension()
			visit(c.IterRange())
			visit(c.AccuInit())
			visit(c.LoopCondition())
			visit(c.LoopStep())
			visit(c.Result())
		}
	}
	visit(e)
	return found
}

func fieldsOf(ident string) map[string]bool {
	switch ident {
	case "source":
		return sourceFields
	case "request":
		return requestFields
	case "response":
		return responseFields
	case "mcp":
		return mcpFields
	case "backend":
		return backendFields
	}
	return nil
}

func keys(m map[string]bool) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	// small maps; a stable order keeps messages testable
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return strings.Join(ks, ", ")
}

// Vars are the values of one evaluation. A value may be a Lazy (or a
// func() any) for a variable that is costly to build and read by few
// rules: it is resolved only when an expression reads the variable.
type Vars map[string]any

// Lazy is a variable's value that is built when an expression first
// reads it. Resolve is called on every such read, so it should keep what
// it built; it must return the same value each time, or rules that read
// the variable twice would see two requests.
type Lazy interface {
	Resolve() any
}

// activation is Vars as cel-go reads them. Unlike cel-go's map
// activation it writes nothing back into the map (Vars may be shared),
// and as a map type it costs no allocation per evaluation.
type activation Vars

func (a activation) ResolveName(name string) (any, bool) {
	v, ok := a[name]
	switch l := v.(type) {
	case Lazy:
		return l.Resolve(), ok
	case func() any:
		return l(), ok
	}
	return v, ok
}

func (activation) Parent() interpreter.Activation { return nil }

// Eval runs the expression. A missing key, a type mismatch or any other
// runtime problem is an error.
func (x *Expression) Eval(vars Vars) (ref.Val, error) {
	out, _, err := x.prog.Eval(activation(vars))
	if err != nil {
		return nil, err
	}
	if types.IsError(out) {
		return nil, fmt.Errorf("%v", out)
	}
	return out, nil
}

// EvalBool runs the expression and requires a bool result.
func (x *Expression) EvalBool(vars Vars) (bool, error) {
	out, err := x.Eval(vars)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("rule returned %s, not bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// EvalString runs the expression and converts the result to a string
// (strings as they are, other values in CEL's string form).
func (x *Expression) EvalString(vars Vars) (string, error) {
	out, err := x.Eval(vars)
	if err != nil {
		return "", err
	}
	if s, ok := out.(types.String); ok {
		return string(s), nil
	}
	s := out.ConvertToType(types.StringType)
	if types.IsError(s) {
		return "", fmt.Errorf("value of type %s is not a string", out.Type().TypeName())
	}
	return string(s.(types.String)), nil
}

// Native runs the expression and returns the result as a plain Go value
// (string, int64, bool, []any, map[string]any...).
func (x *Expression) Native(vars Vars) (any, error) {
	out, err := x.Eval(vars)
	if err != nil {
		return nil, err
	}
	return toNative(out), nil
}

func toNative(v ref.Val) any {
	switch t := v.(type) {
	case types.String:
		return string(t)
	case types.Int:
		return int64(t)
	case types.Bool:
		return bool(t)
	case types.Double:
		return float64(t)
	}
	if l, ok := v.(traits.Lister); ok {
		var out []any
		for it := l.Iterator(); it.HasNext() == types.True; {
			out = append(out, toNative(it.Next()))
		}
		return out
	}
	if m, ok := v.(traits.Mapper); ok {
		out := map[string]any{}
		for it := m.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			out[fmt.Sprint(toNative(k))] = toNative(m.Get(k))
		}
		return out
	}
	return v.Value()
}
