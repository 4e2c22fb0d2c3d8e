package httppolicy

import (
	"net/http"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// Transformations changes the request's headers with CEL values before
// it is forwarded (agentgateway's transformations.request: add appends,
// set replaces, remove deletes, in that order). A value that cannot be
// computed, or is not a valid header value, removes the header instead:
// a failed expression must not leave a caller-supplied value in place
// (with `set: {authorization: ...}`, the caller's own token). "host" and
// ":authority" change the Host, ":method" the method.
//
// transformations.response changes the response's headers the same way
// when they are written. Its values are computed when the request
// passes the policy, from the request's variables: response.* is not
// known then, and an expression naming it is a load error.
type Transformations struct {
	add, set []headerExpr
	remove   []string
	response *responseTransform
}

// responseTransform is transformations.response.
type responseTransform struct {
	add, set []headerExpr
	remove   []string
}

type headerExpr struct {
	name string
	expr *cel.Expression
}

var transformations = module("transformations", RequestRewrite,
	func(p *config.RoutePolicies) *config.Transformations { return p.Transformations },
	func(t *config.Transformations, path string, c Compiler) Policy {
		out := &Transformations{}
		if rq := t.Request; rq != nil {
			out.add, out.set = compileHeaderExprs(rq, path+".request", c)
			out.remove = rq.Remove
		}
		if rs := t.Response; rs != nil {
			out.response = &responseTransform{remove: rs.Remove}
			out.response.add, out.response.set = compileHeaderExprs(rs, path+".response", c)
		}
		return out
	})

// compileHeaderExprs compiles one side's add and set values.
func compileHeaderExprs(t *config.Transform, path string, c Compiler) (add, set []headerExpr) {
	for _, e := range t.Add {
		add = append(add, headerExpr{e.Name, c.Expression(cel.Request, e.Pos, path+".add."+e.Name, e.Expr)})
	}
	for _, e := range t.Set {
		set = append(set, headerExpr{e.Name, c.Expression(cel.Request, e.Pos, path+".set."+e.Name, e.Expr)})
	}
	return add, set
}

// Run applies the changes to r.
func (t *Transformations) Run(_ http.ResponseWriter, r *http.Request, x Exchange) bool {
	if len(t.add)+len(t.set) > 0 {
		vars := x.Vars()
		for _, h := range t.add {
			apply(r, h, vars, false)
		}
		for _, h := range t.set {
			apply(r, h, vars, true)
		}
	}
	for _, name := range t.remove {
		r.Header.Del(name)
	}
	if t.response != nil {
		x.ModifyResponse(t.response.modifier(x.Vars()))
	}
	return true
}

// modifier computes the response's header changes from vars. A value
// that cannot be computed, or is not a valid header value, removes the
// header, as on the request side: the backend's own value must not pass
// as the gateway's.
func (t *responseTransform) modifier(vars cel.Vars) *HeaderModifier {
	m := &HeaderModifier{Remove: t.remove}
	put := func(h headerExpr, into *map[string]string) {
		v, err := "", error(nil)
		if h.expr != nil {
			v, err = h.expr.EvalString(vars)
		}
		if h.expr == nil || err != nil || !httpguts.ValidHeaderFieldValue(v) {
			m.Remove = append(slices.Clip(m.Remove), h.name)
			return
		}
		if *into == nil {
			*into = map[string]string{}
		}
		(*into)[h.name] = v
	}
	for _, h := range t.add {
		put(h, &m.Add)
	}
	for _, h := range t.set {
		put(h, &m.Set)
	}
	return m
}

func apply(r *http.Request, h headerExpr, vars cel.Vars, replace bool) {
	v, ok := "", false
	if h.expr != nil {
		s, err := h.expr.EvalString(vars)
		v, ok = s, err == nil
	}
	switch strings.ToLower(h.name) {
	case ":method":
		if ok && v != "" && httpguts.ValidHeaderFieldName(v) {
			r.Method = v
		}
		return
	case ":authority", "host":
		if ok && v != "" && httpguts.ValidHostHeader(v) {
			r.Host = v
		}
		return
	}
	if !ok || !httpguts.ValidHeaderFieldValue(v) {
		r.Header.Del(h.name)
		return
	}
	if replace {
		r.Header.Set(h.name, v)
	} else {
		r.Header.Add(h.name, v)
	}
}
