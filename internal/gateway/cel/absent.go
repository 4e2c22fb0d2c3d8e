package cel

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
)

// A rule that reads a value the caller may not have (a jwt claim, a
// header, source.tailscale off the tailnet, the one of mcp.tool/prompt/
// resource that is not set) errors when it is absent, and an erroring rule
// counts against the caller. For a deny rule that means "deny everyone
// without the value", which is rarely what `deny: 'request.headers["x-block"]
// == "1"'` meant. mayBeAbsent finds those reads at load time so the
// gateway can warn; it is a best-effort walk of the checked AST, not a
// proof, and it errs towards silence:
//
//   - a read inside has(...) or in the first argument of default(...) is
//     guarded;
//   - so is a read whose path appears anywhere in the rule as has(path) or
//     `"key" in parent` (position is not checked: `has(jwt.a) && jwt.a`
//     and the rarer `has(jwt.a) || jwt.a` look the same here);
//   - only paths rooted at a phase variable are considered.

// segment is one step of a path: a field select or a constant index.
type segment struct {
	key   string // field name or constant key; "" for a computed index
	shown string // as written: .role, ["x-user"], [0], [...]
}

// mayBeAbsent returns the display form of every unguarded read in e of a
// value that may be absent, each once, in the order they appear.
func mayBeAbsent(e ast.Expr) []string {
	guards := map[string]bool{}
	collectGuards(e, guards)
	var out []string
	seen := map[string]bool{}
	var visit func(e ast.Expr, guarded bool)
	visit = func(e ast.Expr, guarded bool) {
		if e == nil {
			return
		}
		if root, segs, ok := pathOf(e); ok && len(segs) > 0 {
			if !guarded {
				if n := riskyPrefix(root, segs, guards); n > 0 {
					if d := display(root, segs[:n]); !seen[d] {
						seen[d] = true
						out = append(out, d)
					}
				}
			}
			// Computed index keys are expressions of their own.
			for _, k := range indexExprs(e) {
				visit(k, guarded)
			}
			return
		}
		switch e.Kind() {
		case ast.SelectKind:
			sel := e.AsSelect()
			// has(x.f) reads x but not f.
			visit(sel.Operand(), guarded)
		case ast.CallKind:
			c := e.AsCall()
			if c.IsMemberFunction() {
				visit(c.Target(), guarded)
			}
			for i, a := range c.Args() {
				visit(a, guarded || (c.FunctionName() == "default" && i == 0))
			}
		case ast.ListKind:
			for _, el := range e.AsList().Elements() {
				visit(el, guarded)
			}
		case ast.MapKind:
			for _, en := range e.AsMap().Entries() {
				me := en.AsMapEntry()
				visit(me.Key(), guarded)
				visit(me.Value(), guarded)
			}
		case ast.ComprehensionKind:
			c := e.AsComprehension()
			visit(c.IterRange(), guarded)
			visit(c.AccuInit(), guarded)
			visit(c.LoopCondition(), guarded)
			visit(c.LoopStep(), guarded)
			visit(c.Result(), guarded)
		}
	}
	visit(e, false)
	return out
}

// collectGuards records the paths that has(path) and `"key" in path`
// test, as keys of guards.
func collectGuards(e ast.Expr, guards map[string]bool) {
	if e == nil {
		return
	}
	switch e.Kind() {
	case ast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			if root, segs, ok := pathOf(sel.Operand()); ok {
				guards[key(root, append(segs, segment{key: sel.FieldName()}))] = true
			}
		}
		collectGuards(sel.Operand(), guards)
	case ast.CallKind:
		c := e.AsCall()
		if c.FunctionName() == "@in" && len(c.Args()) == 2 {
			if k, ok := constString(c.Args()[0]); ok {
				if root, segs, ok := pathOf(c.Args()[1]); ok {
					guards[key(root, append(segs, segment{key: k}))] = true
				}
			}
		}
		if c.IsMemberFunction() {
			collectGuards(c.Target(), guards)
		}
		for _, a := range c.Args() {
			collectGuards(a, guards)
		}
	case ast.ListKind:
		for _, el := range e.AsList().Elements() {
			collectGuards(el, guards)
		}
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			collectGuards(en.AsMapEntry().Key(), guards)
			collectGuards(en.AsMapEntry().Value(), guards)
		}
	case ast.ComprehensionKind:
		c := e.AsComprehension()
		for _, x := range []ast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()} {
			collectGuards(x, guards)
		}
	}
}

// pathOf reads e as a chain of selects and indexes on a phase variable:
// request.headers["x-user"] is ("request", [headers, ["x-user"]]). A
// has() select is not a read and ends no path.
func pathOf(e ast.Expr) (string, []segment, bool) {
	switch e.Kind() {
	case ast.IdentKind:
		name := e.AsIdent()
		for _, v := range allVariables {
			if v == name {
				return name, nil, true
			}
		}
		return "", nil, false
	case ast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			return "", nil, false
		}
		root, segs, ok := pathOf(sel.Operand())
		if !ok {
			return "", nil, false
		}
		return root, append(segs, segment{key: sel.FieldName(), shown: "." + sel.FieldName()}), true
	case ast.CallKind:
		c := e.AsCall()
		if c.FunctionName() != "_[_]" || len(c.Args()) != 2 {
			return "", nil, false
		}
		root, segs, ok := pathOf(c.Args()[0])
		if !ok {
			return "", nil, false
		}
		k, ok := constString(c.Args()[1])
		shown := "[...]"
		if ok {
			shown = "[" + literalText(c.Args()[1]) + "]"
		}
		return root, append(segs, segment{key: k, shown: shown}), true
	}
	return "", nil, false
}

// indexExprs are the computed (non-constant) index keys along a path.
func indexExprs(e ast.Expr) []ast.Expr {
	var out []ast.Expr
	for {
		switch e.Kind() {
		case ast.SelectKind:
			e = e.AsSelect().Operand()
			continue
		case ast.CallKind:
			c := e.AsCall()
			if _, ok := constString(c.Args()[1]); !ok {
				out = append(out, c.Args()[1])
			}
			e = c.Args()[0]
			continue
		}
		return out
	}
}

func constString(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	switch v := e.AsLiteral().(type) {
	case types.String:
		return string(v), true
	case types.Int:
		return strconv.FormatInt(int64(v), 10), true
	}
	return "", false
}

// riskyPrefix is the length of the shortest prefix of root.segs that may
// be absent and is not guarded, or 0.
func riskyPrefix(root string, segs []segment, guards map[string]bool) int {
	for n := 1; n <= len(segs); n++ {
		if mayBeMissing(root, segs[:n]) && (segs[n-1].key == "" || !guards[key(root, segs[:n])]) {
			return n
		}
	}
	return 0
}

// mayBeMissing says whether the value at root.segs can be absent when
// everything before it is present. It encodes what the gateway puts in
// each variable (serve.go, mcp): request.* and source.address/port are
// always there; headers, claims, extAuthz metadata and source.tailscale
// (tailnet binds only) are not; mcp has exactly one of tool, prompt and
// resource.
func mayBeMissing(root string, segs []segment) bool {
	first := segs[0].key
	switch len(segs) {
	case 1:
		switch root {
		case "jwt", "extauthz":
			return true
		case "source":
			// spiffeId: only callers with a client SVID (tls.spiffe).
			return first == "tailscale" || first == "spiffeId" || !sourceFields[first]
		case "request":
			return !requestFields[first]
		case "response":
			return !responseFields[first]
		case "mcp":
			return first != "method"
		}
		return true
	case 2:
		switch {
		case (root == "request" || root == "response") && first == "headers":
			return true // a header the caller did not send
		case root == "source" && first == "tailscale":
			return !tailscaleFields[segs[1].key]
		case root == "mcp" && (first == "tool" || first == "prompt"):
			return segs[1].key != "name" && segs[1].key != "target"
		case root == "mcp" && first == "resource":
			return segs[1].key != "name" && segs[1].key != "target" && segs[1].key != "uri"
		}
		// Claims and metadata are the caller's own shape; below the
		// known fields of request and source there are only strings.
		return true
	}
	return true
}

func key(root string, segs []segment) string {
	var b strings.Builder
	b.WriteString(root)
	for _, s := range segs {
		b.WriteByte(0)
		b.WriteString(s.key)
	}
	return b.String()
}

func display(root string, segs []segment) string {
	var b strings.Builder
	b.WriteString(root)
	for _, s := range segs {
		b.WriteString(s.shown)
	}
	return b.String()
}

func literalText(e ast.Expr) string {
	if v, ok := e.AsLiteral().(types.String); ok {
		return strconv.Quote(string(v))
	}
	return fmt.Sprint(e.AsLiteral().Value())
}
