package config

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// answersItself says whether a route's policies answer every request
// without a backend (an unconditional directResponse, a redirect).
func answersItself(p *RoutePolicies) bool {
	if p == nil {
		return false
	}
	if p.RequestRedirect != nil {
		return true
	}
	if dr := p.DirectResponse; dr != nil {
		for _, r := range dr.Responses {
			if r.Condition == "" {
				return true
			}
		}
	}
	return false
}

func (d *decoder) checkFrontend(f *File) {
	fp := f.FrontendPolicies
	if fp == nil {
		return
	}
	if fp.AccessLog != nil && fp.Logging != nil {
		d.failAt(fp.Logging.Pos, "frontendPolicies.logging", "set accessLog or its older name logging, not both")
	}
	if fp.AccessLog == nil {
		fp.AccessLog = fp.Logging
	}
	if a := fp.AccessLog; a != nil && a.OTLP != nil {
		p := "frontendPolicies.accessLog.otlp"
		if a == fp.Logging {
			p = "frontendPolicies.logging.otlp"
		}
		d.checkAccessLogOTLP(a.OTLP, p)
	}
	if h := fp.HTTP; h != nil {
		d.checkDuration(h.Pos, "frontendPolicies.http.http1IdleTimeout", &h.HTTP1IdleTimeout, true)
	}
}

// defaultMCPPort is agentgateway's port for the simplified mcp: block.
const defaultMCPPort = 3000

// addSimpleMCP turns the top-level mcp: block into the bind agentgateway
// builds from it (local.rs, convert_mcp_config): a bind on port (default
// 3000) with one HTTP listener "mcp" and one route "default" matching
// every path, whose backend is the MCP backend and whose policies are
// the block's.
func (d *decoder) addSimpleMCP(f *File, m *SimpleMCP) {
	port := m.Port
	if port == 0 {
		port = defaultMCPPort
	}
	mb := m.MCPBackend
	mb.Pos = m.Pos
	f.Binds = append(f.Binds, Bind{
		Pos:  m.Pos,
		Port: port,
		Listeners: []Listener{{
			Pos: m.Pos, Name: "mcp", Protocol: "HTTP",
			Routes: []Route{{
				Pos: m.Pos, Name: "default", YAMLPath: SimpleMCPPath,
				Policies: m.Policies,
				Backends: []Backend{{Pos: m.Pos, MCP: &mb}},
			}},
		}},
	})
}

func (d *decoder) checkTraffic(p *RoutePolicies, path string) {
	if dr := p.DirectResponse; dr != nil {
		base := path + ".directResponse"
		for i, r := range dr.Responses {
			rp := base
			if dr.Conditional {
				rp = fmt.Sprintf("%s.conditional[%d]", base, i)
				if r.Condition == "" && i != len(dr.Responses)-1 {
					d.failAt(r.Pos, rp, "an entry without a condition is the fallback and must be the last")
				}
			}
			if r.Status < 100 || r.Status > 999 {
				d.failAt(r.Pos, rp+".status", "expected an HTTP status code, got %d", r.Status)
			}
			if r.Body != "" && r.BodyExpression != "" {
				d.failAt(r.Pos, rp, "set body or bodyExpression, not both")
			}
			for name := range r.Headers {
				if !validHeaderName(name) {
					d.failAt(r.Pos, rp+".headers."+name, "invalid header name")
				}
			}
		}
	}
	if rr := p.RequestRedirect; rr != nil {
		switch rr.Scheme {
		case "", "http", "https":
		default:
			d.failAt(rr.Pos, path+".requestRedirect.scheme", "expected http or https, got %q", rr.Scheme)
		}
		if rr.Status != 0 && (rr.Status < 300 || rr.Status > 399) {
			d.failAt(rr.Pos, path+".requestRedirect.status", "expected a 3xx status, got %d", rr.Status)
		}
		if a := rr.Authority; a != nil && a.Auto {
			d.failAt(a.Pos, path+".requestRedirect.authority", "auto is only meaningful in urlRewrite")
		}
	}
	if m := p.RequestMirror; m != nil {
		if m.Percentage.V < 0 || m.Percentage.V > 1 {
			d.failAt(m.Pos, path+".requestMirror.percentage", "expected a fraction from 0.0 to 1.0, got %v", m.Percentage.V)
		}
	}
	if t := p.BackendTLS; t != nil && (t.Cert == "") != (t.Key == "") {
		d.failAt(t.Pos, path+".backendTLS", "set both cert and key (a client certificate), or neither")
	}
	if t := p.BackendTLS; t != nil && t.Spiffe != nil {
		d.checkBackendSpiffe(t, path+".backendTLS")
	}
	if a := p.BackendAuth; a != nil && a.JWTSign != nil {
		j := a.JWTSign
		switch j.Alg {
		case "":
			j.Alg = "ES256"
		case "RS256", "RS384", "RS512", "PS256", "ES256", "ES384":
		default:
			d.failAt(j.Pos, path+".backendAuth.jwtSign.alg", "expected RS256, RS384, RS512, PS256, ES256 or ES384, got %q", j.Alg)
		}
		d.checkDuration(j.Pos, path+".backendAuth.jwtSign.ttl", &j.TTL, true)
		if j.TTL.D == 0 {
			j.TTL.D = 5 * time.Minute
		}
	}
	if a := p.BackendAuth; a != nil && a.OAuthTokenExchange != nil {
		d.checkTokenExchange(a.OAuthTokenExchange, path+".backendAuth.oauthTokenExchange")
	}
	if a := p.BackendAuth; a != nil && a.CrossAppAccess != nil {
		d.checkCrossAppAccess(a.CrossAppAccess, path+".backendAuth.crossAppAccess")
	}
	if m := p.MCPAuthentication; m != nil {
		switch m.Mode {
		case "", "strict", "optional", "permissive":
		default:
			d.failAt(m.Pos, path+".mcpAuthentication.mode", "expected strict, optional or permissive, got %q", m.Mode)
		}
		if m.JWKS == nil {
			d.failAt(m.Pos, path+".mcpAuthentication.jwks", "tailgate needs jwks (a file, inline JSON or a URL); discovery from the issuer is not supported yet")
		}
		if r, ok := m.ResourceMetadata["resource"].(string); !ok || r == "" {
			d.failAt(m.Pos, path+".mcpAuthentication.resourceMetadata.resource", "resource (the MCP endpoint's URL) is required")
		}
	}
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c) {
			return false
		}
	}
	return http.CanonicalHeaderKey(s) != ""
}
