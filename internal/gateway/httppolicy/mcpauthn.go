package httppolicy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// mcpAuthentication is MCP's authorization spec on a route, as
// agentgateway implements it (crates/agentgateway/src/mcp/auth.rs):
//
//   - GET /.well-known/oauth-protected-resource<path> answers the RFC 9728
//     metadata: resource (the URL the metadata is for), authorization_servers
//     ([issuer], or with a provider adapter the gateway's own URL),
//     mcp_protocol_version, resource_type, and every resourceMetadata key
//     in snake_case (scopesSupported → scopes_supported);
//   - GET /.well-known/oauth-authorization-server<path> relays the issuer's
//     authorization server metadata (RFC 8414; OpenID discovery as the
//     fallback), with issuer set to the gateway's URL when a provider
//     adapter is configured, so clients keep talking to the gateway;
//   - any other request needs a valid bearer token (issuer, audiences,
//     jwks as jwtAuth); without one, in strict mode (the default), the
//     answer is 401 with `WWW-Authenticate: Bearer resource_metadata=
//     "<resource origin>/.well-known/oauth-protected-resource<path>"`.
var mcpAuthentication = module("mcpAuthentication", Authentication,
	func(p *config.RoutePolicies) *config.MCPAuthentication { return p.MCPAuthentication },
	compileMCPAuthentication)

const (
	protectedResourcePrefix = "/.well-known/oauth-protected-resource"
	authServerPrefix        = "/.well-known/oauth-authorization-server"
)

type mcpAuthn struct {
	jwt      *JWTAuth
	issuer   string
	provider bool
	metadata map[string]any
	origin   string // scheme://host of resourceMetadata.resource
	client   *http.Client
}

func compileMCPAuthentication(m *config.MCPAuthentication, path string, c Compiler) Policy {
	mode := m.Mode
	if mode == "" {
		mode = "strict"
	}
	ja := compileJWTAuth(&config.JWTAuth{Pos: m.Pos, Mode: mode, Providers: []config.JWTProvider{{
		Pos: m.Pos, Issuer: m.Issuer, Audiences: m.Audiences, JWKS: m.JWKS, JWTValidationOptions: m.JWTValidationOptions,
	}}}, path, c)
	if ja == nil {
		return nil
	}
	a := &mcpAuthn{jwt: ja.(*JWTAuth), issuer: m.Issuer, metadata: map[string]any{}, client: c.HTTPClient()}
	a.provider = m.Provider != nil
	for k, v := range m.ResourceMetadata {
		a.metadata[snakeCase(k)] = v
	}
	if r, ok := m.ResourceMetadata["resource"].(string); ok {
		if u, err := url.Parse(r); err == nil && u.Host != "" {
			a.origin = u.Scheme + "://" + u.Host
		}
	}
	return a
}

func snakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (a *mcpAuthn) requestOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (a *mcpAuthn) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	p := r.URL.Path
	switch {
	case p == protectedResourcePrefix || strings.HasPrefix(p, protectedResourcePrefix+"/"):
		rest := strings.TrimPrefix(p, protectedResourcePrefix)
		resource := a.requestOrigin(r) + rest
		issuer := a.issuer
		if a.provider {
			issuer = resource
		}
		md := map[string]any{
			"resource":              resource,
			"authorization_servers": []string{issuer},
			"mcp_protocol_version":  "2025-06-18",
			"resource_type":         "mcp-server",
		}
		for k, v := range a.metadata {
			md[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "content-type")
		x.Note("mcpAuthentication: protected resource metadata")
		json.NewEncoder(w).Encode(md)
		return false
	case p == authServerPrefix || strings.HasPrefix(p, authServerPrefix+"/"):
		a.authorizationServer(w, r, x)
		return false
	}
	out := a.jwt.Check(r.Context(), r)
	if out.Reject {
		origin := a.origin
		if origin == "" {
			origin = a.requestOrigin(r)
		}
		w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+origin+protectedResourcePrefix+p+`"`)
		Deny(w, x, "mcpAuthentication", out.Reason, http.StatusUnauthorized, "authentication required")
		return false
	}
	if out.Claims != nil {
		x.Authenticated(out.Claims)
	}
	return true
}

// authorizationServer relays the issuer's metadata.
func (a *mcpAuthn) authorizationServer(w http.ResponseWriter, r *http.Request, x Exchange) {
	base := strings.TrimSuffix(a.issuer, "/")
	var md map[string]any
	for _, u := range []string{base + authServerPrefix, base + "/.well-known/openid-configuration"} {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u, nil)
		if err != nil {
			continue
		}
		resp, err := a.client.Do(req)
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &md) == nil {
			break
		}
		md = nil
	}
	if md == nil {
		Deny(w, x, "mcpAuthentication", "authorization server metadata unavailable", http.StatusBadGateway, "authorization server metadata unavailable")
		return
	}
	if a.provider {
		md["issuer"] = a.requestOrigin(r) + strings.TrimPrefix(r.URL.Path, authServerPrefix)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	x.Note("mcpAuthentication: authorization server metadata")
	json.NewEncoder(w).Encode(md)
}
