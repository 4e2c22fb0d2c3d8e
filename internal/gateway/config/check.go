package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

func (d *decoder) failAt(p Pos, path, format string, args ...any) {
	if len(d.errs) >= maxErrors {
		return
	}
	d.errs = append(d.errs, &Error{File: d.file, Path: path, Line: p.Line, Column: p.Column, Msg: fmt.Sprintf(format, args...)})
}

// checkSemantics catches what the shape alone cannot: one-of choices the
// schema expresses with oneOf, enums, durations, and tailgate's own
// limits. CEL is checked later, by the compiler, which knows the phases.
func (d *decoder) checkSemantics(f *File) {
	if f.Config != nil && f.Config.Logging != nil {
		switch f.Config.Logging.Format {
		case "", "text", "json":
		default:
			d.failAt(Pos{}, "config.logging.format", "expected text or json, got %q", f.Config.Logging.Format)
		}
	}
	if t := f.Tailnet; t != nil {
		d.checkTailnet(t)
	}
	d.checkFrontend(f)
	d.checkSpiffe(f)
	d.checkTracing(f)
	d.checkMCPSettings(f)
	d.checkNamedBackends(f)
	attachMCP := f.MCP != nil && mcpAttaches(f, f.MCP)
	if f.MCP != nil && !attachMCP {
		d.addSimpleMCP(f, f.MCP)
	}
	d.addGateways(f, attachMCP)
	d.checkEgress(f)
	ports := map[int]string{}
	for bi := range f.Binds {
		b := &f.Binds[bi]
		bp := b.PathAt(bi)
		if b.Port < 1 || b.Port > 65535 {
			d.failAt(b.Pos, bp+".port", "port must be between 1 and 65535, got %d", b.Port)
		}
		if prev, dup := ports[b.Port]; dup {
			d.failAt(b.Pos, bp+".port", "port %d is already used by %s", b.Port, prev)
		}
		ports[b.Port] = bp
		d.checkBodyReadTimeout(b, bp+".bodyReadTimeout")
		if b.Tailnet && f.Tailnet == nil {
			d.failAt(b.Pos, bp+".tailnet", "a tailnet bind needs a top-level tailnet: block")
		}
		var protos []string
		for li := range b.Listeners {
			l := &b.Listeners[li]
			lp := fmt.Sprintf("%s.listeners[%d]", bp, li)
			pp := lp + ".policies"
			if l.YAMLPath != "" {
				lp, pp = l.YAMLPath, l.YAMLPath // policies inline
			}
			switch l.Protocol {
			case "", "HTTP":
				protos = append(protos, "HTTP")
				if l.TLS != nil {
					d.failAt(l.TLS.Pos, lp+".tls", "tls is set but protocol is HTTP; use protocol: HTTPS")
				}
			case "HTTPS":
				protos = append(protos, "HTTPS")
				if l.TLS == nil {
					d.failAt(l.Pos, lp+".tls", "protocol HTTPS needs tls: {cert, key}")
				} else {
					d.checkListenerTLS(f, l.TLS, lp+".tls")
				}
			case "TLS", "TCP", "HBONE":
				d.failAt(l.Pos, lp+".protocol", "protocol %s is not supported by tailgate yet", l.Protocol)
			default:
				d.failAt(l.Pos, lp+".protocol", "expected HTTP or HTTPS, got %q", l.Protocol)
			}
			if l.Policies != nil {
				d.checkPolicies(l.Policies, pp)
			}
			for ri := range l.Routes {
				if !l.Routes[ri].checked {
					d.checkRoute(&l.Routes[ri], fmt.Sprintf("%s.routes[%d]", lp, ri))
				}
			}
		}
		for _, p := range protos[min(1, len(protos)):] {
			if p != protos[0] {
				d.failAt(b.Pos, bp+".listeners", "listeners on one bind must all be HTTP or all HTTPS")
				break
			}
		}
	}
	// After the routes were checked: their backend: references are
	// resolved, so a named dynamic backend is seen too.
	d.checkInternalBinds(f)
}

// checkBodyReadTimeout parses bind.bodyReadTimeout: unlike the policies'
// durations it may be 0s, which turns the bound off.
func (d *decoder) checkBodyReadTimeout(b *Bind, path string) {
	s := b.BodyReadTimeout.Raw
	if s == "" {
		return
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur < 0 {
		d.failAt(b.Pos, path, "want a duration like 30s (0s turns it off), got %q", s)
		return
	}
	b.BodyReadTimeout.D = dur
}

func (d *decoder) checkTailnet(t *Tailnet) {
	if t.Ephemeral == (t.StateDir != "") {
		d.failAt(t.Pos, "tailnet", "set exactly one of stateDir (a persistent node) or ephemeral: true")
	}
	if a := t.AuthKey; a != nil && (a.Env == "") == (a.File == "") {
		d.failAt(a.Pos, "tailnet.authKey", "set exactly one of env or file (the key itself never goes in the config file)")
	}
	for i, tag := range t.Tags {
		if !strings.HasPrefix(tag, "tag:") || len(tag) == len("tag:") {
			d.failAt(t.Pos, fmt.Sprintf("tailnet.tags[%d]", i), "tags look like tag:name, got %q", tag)
		}
	}
}

// checkPolicies checks a listener's policies, and the same keys of a
// route's (checkRoute adds the route's own).
func (d *decoder) checkPolicies(p *GatewayPolicies, path string) {
	if p.OIDC != nil {
		d.checkOIDC(p.OIDC, path+".oidc")
	}
	if p.JWTAuth != nil {
		d.checkJWT(p.JWTAuth, path+".jwtAuth")
	}
	if p.ExtAuthz != nil {
		d.checkExtAuthz(p.ExtAuthz, path+".extAuthz")
	}
	if p.CORS != nil {
		d.checkDuration(p.CORS.Pos, path+".cors.maxAge", &p.CORS.MaxAge, true)
	}
	if p.Transformations != nil {
		d.checkTransformations(p.Transformations, path+".transformations")
	}
}

func (d *decoder) checkRoute(r *Route, path string) {
	for mi, m := range r.Matches {
		if m.Method != "" && strings.ToUpper(m.Method) != m.Method {
			d.failAt(m.Pos, fmt.Sprintf("%s.matches[%d].method", path, mi), "methods are upper case, got %q", m.Method)
		}
	}
	if r.YAMLPath != "" {
		path = r.YAMLPath
	}
	if len(r.Backends) == 0 && !answersItself(r.Policies) {
		d.failAt(r.Pos, path+".backends", "a route needs at least one backend (or a directResponse or requestRedirect policy)")
	}
	for bi := range r.Backends {
		b := &r.Backends[bi]
		bp := fmt.Sprintf("%s.backends[%d]", path, bi)
		inherited := false
		if b.Backend != "" {
			inherited = d.resolveBackend(b, bp)
		}
		mp := bp + ".mcp"
		if r.YAMLPath == SimpleMCPPath {
			mp = SimpleMCPPath
		}
		if b.YAMLPath == "" { // a named backend was checked where it was written
			d.checkBackendKind(b, bp, mp)
		}
		if b.Policies != nil && !inherited {
			d.checkBackendPolicies(b.Policies, b.MCP != nil, bp+".policies")
		}
	}
	p := r.Policies
	if p == nil {
		return
	}
	d.checkPolicies(&p.GatewayPolicies, path+".policies")
	if t := p.Timeout; t != nil {
		d.checkDuration(t.Pos, path+".policies.timeout.requestTimeout", &t.RequestTimeout, true)
		d.checkDuration(t.Pos, path+".policies.timeout.backendRequestTimeout", &t.BackendRequestTimeout, true)
	}
	d.checkTraffic(p, path+".policies")
	if rl := p.RemoteRateLimit; rl != nil {
		d.checkRemoteRateLimit(rl, path+".policies.remoteRateLimit")
	}
	if rl := p.LocalRateLimit; rl != nil {
		for i := range rl.Buckets {
			b := &rl.Buckets[i]
			bp := fmt.Sprintf("%s.policies.localRateLimit[%d]", path, i)
			d.checkDuration(b.Pos, bp+".fillInterval", &b.FillInterval, false)
			if b.Type != "" && b.Type != "requests" {
				if b.Type == "tokens" {
					d.failAt(b.Pos, bp+".type", "type tokens (LLM token budgets) is not supported by tailgate yet")
				} else {
					d.failAt(b.Pos, bp+".type", "expected requests or tokens, got %q", b.Type)
				}
			}
			if b.MaxTokens == 0 {
				d.failAt(b.Pos, bp+".maxTokens", "maxTokens must be at least 1")
			}
		}
	}
}

// checkDuration parses a positive duration into v.D, the only place a
// policy's duration is parsed.
func (d *decoder) checkDuration(p Pos, path string, v *Duration, optional bool) {
	s := v.Raw
	if s == "" {
		if !optional {
			d.failAt(p, path, "a duration is required, e.g. 1s")
		}
		return
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur <= 0 {
		d.failAt(p, path, "expected a positive duration like 500ms, 10s or 1m, got %q", s)
		return
	}
	v.D = dur
}

var knownAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true, "HS256": true, "HS384": true, "HS512": true,
}

// checkJWT validates jwtAuth and folds the single-provider form into
// Providers so the compiler sees one shape.
func (d *decoder) checkJWT(j *JWTAuth, path string) {
	switch j.Mode {
	case "", "strict", "optional", "permissive":
	default:
		d.failAt(j.Pos, path+".mode", "expected strict, optional or permissive, got %q", j.Mode)
	}
	single := j.Issuer != "" || j.JWKS != nil || len(j.Audiences) > 0 || j.JWTValidationOptions != nil
	switch {
	case single && len(j.Providers) > 0:
		d.failAt(j.Pos, path, "set either providers or issuer/jwks, not both")
	case single:
		if j.Issuer == "" {
			d.failAt(j.Pos, path, "missing required key \"issuer\"")
		}
		if j.JWKS == nil {
			d.failAt(j.Pos, path, "missing required key \"jwks\"")
		}
		j.Providers = []JWTProvider{{Pos: j.Pos, Issuer: j.Issuer, Audiences: j.Audiences, JWKS: j.JWKS, JWTValidationOptions: j.JWTValidationOptions, Algorithms: j.Algorithms}}
	case len(j.Providers) == 0:
		d.failAt(j.Pos, path, "set issuer and jwks (or providers)")
	default:
		for i := range j.Providers {
			if len(j.Providers[i].Algorithms) == 0 {
				j.Providers[i].Algorithms = j.Algorithms
			}
		}
	}
	for i, p := range j.Providers {
		for _, a := range p.Algorithms {
			if !knownAlgs[a] {
				d.failAt(p.Pos, fmt.Sprintf("%s.providers[%d].algorithms", path, i), "unknown signing algorithm %q", a)
			}
		}
	}
}

func (d *decoder) checkExtAuthz(e *ExtAuthz, path string) {
	if e.Host == "" {
		d.failAt(e.Pos, path, "missing required key \"host\"")
	}
	if e.Protocol == nil {
		d.failAt(e.Pos, path+".protocol", "the default gRPC protocol is not supported by tailgate yet; set protocol: {http: {}}")
	} else if e.Protocol.HTTP == nil {
		d.failAt(e.Pos, path+".protocol", "expected http: {...}")
	}
	if e.Cache != nil {
		d.checkExtAuthzCache(e.Cache, path+".cache")
	}
	if f := e.FailureMode; f != nil && f.DenyWithStatus != 0 && (f.DenyWithStatus < 100 || f.DenyWithStatus > 599) {
		d.failAt(f.Pos, path+".failureMode.denyWithStatus", "expected an HTTP status code, got %d", f.DenyWithStatus)
	}
}

// hasErrorUnder reports whether a problem was already found at or below
// path, so a follow-on complaint ("needs host" after "mcp not supported")
// does not bury the real one.
func (d *decoder) hasErrorUnder(path string) bool {
	for _, e := range d.errs {
		if e.Path == path || strings.HasPrefix(e.Path, path+".") {
			return true
		}
	}
	return false
}

func (d *decoder) checkMCP(m *MCPBackend, path string) {
	switch m.PrefixMode {
	case "", "conditional", "always", "never":
	default:
		d.failAt(m.Pos, path+".prefixMode", "expected conditional, always or never, got %q", m.PrefixMode)
	}
	switch m.FailureMode {
	case "", "failClosed", "failOpen":
	default:
		d.failAt(m.Pos, path+".failureMode", "expected failClosed or failOpen, got %q", m.FailureMode)
	}
	switch m.StatefulMode {
	case "", "stateful", "stateless":
	default:
		d.failAt(m.Pos, path+".statefulMode", "expected stateful or stateless, got %q", m.StatefulMode)
	}
	if len(m.Targets) == 0 && !d.hasErrorUnder(path) {
		d.failAt(m.Pos, path+".targets", "an mcp backend needs at least one target")
	}
	names := map[string]bool{}
	for i, t := range m.Targets {
		tp := fmt.Sprintf("%s.targets[%d]", path, i)
		if names[t.Name] {
			d.failAt(t.Pos, tp+".name", "target name %q is used twice", t.Name)
		}
		names[t.Name] = true
		if strings.ContainsAny(t.Name, " /") {
			d.failAt(t.Pos, tp+".name", "target names may not contain spaces or slashes, got %q", t.Name)
		}
		n := 0
		for _, set := range []bool{t.Stdio != nil, t.MCP != nil, t.SSE != nil, t.OpenAPI != nil} {
			if set {
				n++
			}
		}
		if n != 1 && !d.hasErrorUnder(tp) {
			d.failAt(t.Pos, tp, "set exactly one of stdio, mcp, sse or openapi")
		}
		if t.OpenAPI != nil {
			d.checkOpenAPI(t.OpenAPI, tp+".openapi")
		}
		for kind, r := range map[string]*MCPRemote{"mcp": t.MCP, "sse": t.SSE} {
			if r != nil && r.Host == "" && !d.hasErrorUnder(tp+"."+kind) {
				d.failAt(r.Pos, tp+"."+kind, "missing required key \"host\"")
			}
		}
	}
}
