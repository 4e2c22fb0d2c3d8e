package httppolicy

import (
	"net/http"
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
type Transformations struct {
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
		rq := t.Request
		if rq == nil {
			return out
		}
		for _, e := range rq.Add {
			out.add = append(out.add, headerExpr{e.Name, c.Expression(cel.Request, e.Pos, path+".request.add."+e.Name, e.Expr)})
		}
		for _, e := range rq.Set {
			out.set = append(out.set, headerExpr{e.Name, c.Expression(cel.Request, e.Pos, path+".request.set."+e.Name, e.Expr)})
		}
		out.remove = rq.Remove
		return out
	})

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
	return true
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
