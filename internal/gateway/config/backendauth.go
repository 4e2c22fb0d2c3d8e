package config

import (
	"gopkg.in/yaml.v3"
)

// BackendTLS is how the gateway speaks TLS to a route's backends
// (agentgateway's LocalBackendTLS). An empty block means TLS with the
// system's roots and the backend's host name.
type BackendTLS struct {
	Pos Pos `yaml:"-"`
	// Cert and Key are a client certificate (PEM files), for mutual TLS.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Root is a PEM file of CAs to trust instead of the system's.
	Root string `yaml:"root"`
	// Hostname is the SNI and the name verified; default the backend's host.
	Hostname string `yaml:"hostname"`
	// Insecure skips certificate verification altogether.
	Insecure bool `yaml:"insecure"`
	// InsecureHost verifies the chain but not the name.
	InsecureHost    bool     `yaml:"insecureHost"`
	ALPN            []string `yaml:"alpn"`
	SubjectAltNames []string `yaml:"subjectAltNames"`

	KeyExchangeGroups Unsupported `yaml:"keyExchangeGroups"`
	// Spiffe presents the gateway's SVID and verifies the upstream's
	// against the trust bundle; subjectAltNames then pins SPIFFE IDs.
	Spiffe *SpiffeBlock `yaml:"spiffe"`
}

// FileOrInline is a string given inline or `{file: path}`.
type FileOrInline struct {
	Pos    Pos
	Inline string
	File   string
}

func (f *FileOrInline) decodeNode(d *decoder, n *yaml.Node, path string) {
	f.Pos = Pos{n.Line, n.Column}
	d.stringUnion(n, path, &f.Inline, arm("file", &f.File))
}

// BackendAuth is the credential the gateway sends to the backend.
// tailgate implements passthrough (the caller's validated bearer token),
// key (a static secret), jwtSign (a JWT the gateway signs),
// oauthTokenExchange and crossAppAccess; the cloud providers' kinds are
// refused.
type BackendAuth struct {
	Pos         Pos
	Passthrough bool
	Key         *FileOrInline
	JWTSign     *JWTSign
	// OAuthTokenExchange trades the caller's token for the backend's
	// (tokenexchange.go).
	OAuthTokenExchange *OAuthTokenExchange
	// CrossAppAccess is the two-step ID-JAG exchange (tokenexchange.go).
	CrossAppAccess *CrossAppAccess
}

// JWTSign mints a short-lived JWT per request.
type JWTSign struct {
	Pos        Pos            `yaml:"-"`
	SigningKey *FileOrInline  `yaml:"signingKey,required"`
	Alg        string         `yaml:"alg"`
	Kid        string         `yaml:"kid"`
	Claims     map[string]any `yaml:"-"`
	TTL        Duration       `yaml:"ttl"`

	Location Unsupported `yaml:"location"`
}

func (b *BackendAuth) decodeNode(d *decoder, n *yaml.Node, path string) {
	b.Pos = Pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode && n.Value == "copilot" {
		d.fail(n, path, "copilot is not supported by tailgate")
		return
	}
	key, val, ok := d.oneOfKeys(n, path, "passthrough", "key", "jwtSign", "gcp", "aws", "azure", "oauthTokenExchange", "crossAppAccess", "credentials")
	if !ok {
		return
	}
	kp := join(path, key)
	val = resolve(val)
	switch key {
	case "passthrough":
		var p struct {
			Location Unsupported `yaml:"location"`
		}
		if !isNull(val) {
			d.decode(val, reflectValue(&p), kp)
		}
		b.Passthrough = true
	case "key":
		b.Key = &FileOrInline{}
		if val.Kind == yaml.MappingNode && len(val.Content) > 0 && resolve(val.Content[0]).Value != "file" {
			var k struct {
				Value    *FileOrInline `yaml:"value,required"`
				Location Unsupported   `yaml:"location"`
			}
			d.decode(val, reflectValue(&k), kp)
			if k.Value != nil {
				b.Key = k.Value
			}
			return
		}
		d.decode(val, reflectValue(b.Key), kp)
	case "jwtSign":
		b.JWTSign = &JWTSign{}
		// claims are free-form: take them out before the strict decode.
		if val.Kind == yaml.MappingNode {
			rest := *val
			rest.Content = nil
			for i := 0; i+1 < len(val.Content); i += 2 {
				if resolve(val.Content[i]).Value == "claims" {
					var claims map[string]any
					if err := val.Content[i+1].Decode(&claims); err != nil || claims == nil {
						d.fail(val.Content[i+1], join(kp, "claims"), "expected an object of claims")
					}
					b.JWTSign.Claims = claims
					continue
				}
				rest.Content = append(rest.Content, val.Content[i], val.Content[i+1])
			}
			val = &rest
		}
		d.decode(val, reflectValue(b.JWTSign), kp)
	case "oauthTokenExchange":
		b.OAuthTokenExchange = &OAuthTokenExchange{}
		d.decode(val, reflectValue(b.OAuthTokenExchange), kp)
	case "crossAppAccess":
		b.CrossAppAccess = &CrossAppAccess{}
		d.decode(val, reflectValue(b.CrossAppAccess), kp)
	case "gcp", "aws", "azure":
		d.fail(n, kp, "cloud provider credentials are not supported by tailgate")
	default:
		d.fail(n, kp, "not supported by tailgate yet")
	}
}

// MCPAuthentication is MCP's authorization spec on a route: bearer
// tokens validated like jwtAuth, OAuth 2.0 protected resource metadata
// (RFC 9728) served at /.well-known/oauth-protected-resource<route path>,
// and a 401 with `WWW-Authenticate: Bearer resource_metadata="..."` for a
// caller without a valid token.
type MCPAuthentication struct {
	Pos                  Pos                `yaml:"-"`
	Issuer               string             `yaml:"issuer,required"`
	Audiences            []string           `yaml:"audiences,required"`
	JWKS                 *JWKSSource        `yaml:"jwks"`
	Mode                 string             `yaml:"mode"` // strict (default) | optional | permissive
	Provider             *MCPIDP            `yaml:"provider"`
	ResourceMetadata     map[string]any     `yaml:"-"`
	JWTValidationOptions *ValidationOptions `yaml:"jwtValidationOptions"`

	AuthorizationLocation Unsupported `yaml:"authorizationLocation"`
	ClientID              Unsupported `yaml:"clientId"`
	ClientSecret          Unsupported `yaml:"clientSecret"`
}

// MCPIDP names the authorization server's kind, for the adapters that
// make its metadata fit MCP clients.
type MCPIDP struct {
	Auth0     *struct{} `yaml:"auth0"`
	Keycloak  *struct{} `yaml:"keycloak"`
	Okta      *struct{} `yaml:"okta"`
	Descope   *struct{} `yaml:"descope"`
	Authentik *struct{} `yaml:"authentik"`
	Entra     *struct{} `yaml:"entra"`
}

// mcpAuthenticationNode decodes resourceMetadata (free-form) apart.
func (m *MCPAuthentication) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected an object, got %s", kindName(n))
		return
	}
	rest := *n
	rest.Content = nil
	found := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		if resolve(n.Content[i]).Value == "resourceMetadata" {
			found = true
			var md map[string]any
			if err := n.Content[i+1].Decode(&md); err != nil || md == nil {
				d.fail(n.Content[i+1], join(path, "resourceMetadata"), "expected an object")
			}
			m.ResourceMetadata = md
			continue
		}
		rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
	}
	type plain MCPAuthentication
	d.decodeStruct(&rest, reflectValue((*plain)(m)), path)
	if !found {
		d.fail(n, path, "missing required key %q", "resourceMetadata")
	}
}
