package gateway

import (
	"iter"
	"log/slog"
	"net/http"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
	"github.com/tailgate-dev/tailgate/internal/gateway/httppolicy"
)

// accessLogSpec is frontendPolicies.accessLog compiled: agentgateway's
// LoggingPolicy. filter decides whether a request is logged at all (a
// filter that errors logs nothing); add appends fields computed in CEL
// after the response (a field whose expression errors, e.g. a claim the
// caller lacks, is left out); remove drops built-in fields by name.
type accessLogSpec struct {
	filter *cel.Expression
	add    []logField
	remove map[string]bool
}

type logField struct {
	name string
	x    *cel.Expression
}

// fieldValues evaluates fields in order and yields each that has a value.
// A field whose expression fails or is null is left out: one bad field
// never costs the whole log line or span.
func fieldValues(fields []logField, vars func() cel.Vars) iter.Seq2[string, any] {
	return func(yield func(string, any) bool) {
		for _, f := range fields {
			if f.x == nil {
				continue
			}
			v, err := f.x.Native(vars())
			if err != nil || v == nil {
				continue
			}
			if !yield(f.name, v) {
				return
			}
		}
	}
}

func (c *compiler) accessLog(a *config.AccessLog) *accessLogSpec {
	const path = "frontendPolicies.accessLog"
	spec := &accessLogSpec{remove: map[string]bool{}}
	if a.Filter != "" {
		spec.filter = c.Expression(cel.Log, a.Pos, path+".filter", a.Filter)
	}
	for _, f := range a.Add {
		spec.add = append(spec.add, logField{f.Name, c.Expression(cel.Log, f.Pos, path+".add."+f.Name, f.Expr)})
	}
	for _, r := range a.Remove {
		spec.remove[r] = true
	}
	return spec
}

// logVars are the Log phase's variables: the request's, plus response
// and backend.
func logVars(r *http.Request, ri *requestInfo, w *statusWriter) cel.Vars {
	vars := cel.Vars{}
	if ri.vars != nil {
		for k, v := range ri.vars.get() {
			vars[k] = v
		}
	} else {
		rv := newRequestVars(r, nil, requestHost(r))
		for k, v := range rv.get() {
			vars[k] = v
		}
		if ri.caller.Address.IsValid() {
			vars["source"] = map[string]any{"address": ri.caller.Address.Addr().String(), "port": int64(ri.caller.Address.Port())}
		}
	}
	vars["response"] = map[string]any{"code": int64(w.status), "headers": httppolicy.FlatHeaders(w.Header())}
	backendType := "service"
	if ri.backend == "" {
		backendType = "none"
	}
	protocol := "http"
	switch {
	case strings.HasPrefix(ri.backend, "mcp:"):
		protocol = "mcp"
	case ri.a2a != nil && (ri.a2a.card || ri.a2a.method != ""):
		protocol = "a2a"
	}
	vars["backend"] = map[string]any{"name": ri.backend, "type": backendType, "protocol": protocol}
	return vars
}

// shape applies the spec to one line's attributes; ok is false when the
// filter says not to log the request.
func (a *accessLogSpec) shape(attrs []slog.Attr, vars func() cel.Vars) ([]slog.Attr, bool) {
	if a == nil {
		return attrs, true
	}
	var vs cel.Vars
	get := func() cel.Vars {
		if vs == nil {
			vs = vars()
		}
		return vs
	}
	if a.filter != nil {
		if ok, err := a.filter.EvalBool(get()); err != nil || !ok {
			return nil, false
		}
	}
	if len(a.remove) > 0 {
		kept := attrs[:0]
		for _, at := range attrs {
			if !a.remove[at.Key] {
				kept = append(kept, at)
			}
		}
		attrs = kept
	}
	for name, v := range fieldValues(a.add, get) {
		attrs = append(attrs, slog.Any(name, v))
	}
	return attrs, true
}
