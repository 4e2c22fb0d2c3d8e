package config

import "strings"

// OAuth token type URNs (RFC 8693 §3).
const (
	TokenTypeAccess = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT    = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeID     = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeIDJAG  = "urn:ietf:params:oauth:token-type:id-jag"
)

// OAuthTokenExchange is backendAuth.oauthTokenExchange: before a request
// goes to the backend, the gateway trades the caller's bearer token at
// an OAuth authorization server's token endpoint for a token meant for
// that backend, and sends that one instead (agentgateway's
// http/auth/oauth). The grant is RFC 8693 token exchange (the caller's
// token is subject_token) or RFC 7523 jwt-bearer (it is the assertion).
type OAuthTokenExchange struct {
	Pos Pos `yaml:"-"`
	// Host is the token endpoint's host:port (or an http(s):// URL).
	Host string `yaml:"host"`
	// Path is the token endpoint's path; default "/".
	Path string `yaml:"path"`
	// GrantType is tokenExchange (default) or jwtBearer.
	GrantType    string              `yaml:"grantType"`
	SubjectToken *TokenExchangeToken `yaml:"subjectToken"`
	// Audiences, Scopes (sent space-separated) and Resources are the
	// requested token's audience, scope and resource parameters.
	Audiences []string `yaml:"audiences"`
	Scopes    []string `yaml:"scopes"`
	Resources []string `yaml:"resources"`
	// RequestedTokenType is a token type URN (tokenExchange only); unset,
	// the parameter is not sent.
	RequestedTokenType string           `yaml:"requestedTokenType"`
	ClientAuth         *OAuthClientAuth `yaml:"clientAuth"`
	// AdditionalParams are extra form parameters, CEL strings of the
	// request; one that cannot be computed fails the request.
	AdditionalParams OrderedExprs     `yaml:"additionalParams"`
	Cache            *TokenCacheLimit `yaml:"cache"`

	ActorToken            Unsupported `yaml:"actorToken"`
	AuthorizationLocation Unsupported `yaml:"authorizationLocation"`
	Policies              Unsupported `yaml:"policies"`
	Service               Unsupported `yaml:"service"`
	Backend               Unsupported `yaml:"backend"`
}

// TokenExchangeToken is subjectToken: where the token is read (default
// the Authorization header's bearer token) and its type URN (default
// access token; id token for crossAppAccess).
type TokenExchangeToken struct {
	Pos       Pos          `yaml:"-"`
	TokenType string       `yaml:"tokenType"`
	Source    *TokenSource `yaml:"source"`
}

// TokenSource is where a credential is read: a header (less a prefix)
// or a CEL expression of the request (jwt.rawToken.unredacted()).
type TokenSource struct {
	Pos        Pos           `yaml:"-"`
	Header     *HeaderSource `yaml:"header"`
	Expression string        `yaml:"expression"`

	QueryParameter Unsupported `yaml:"queryParameter"`
	Cookie         Unsupported `yaml:"cookie"`
}

// HeaderSource is a header and the prefix ("Bearer ") removed from it.
type HeaderSource struct {
	Name   string  `yaml:"name,required"`
	Prefix *string `yaml:"prefix"`
}

// CrossAppAccess is backendAuth.crossAppAccess (the Identity Assertion
// JWT Authorization Grant, "ID-JAG"): the caller's ID token is exchanged
// at the identity provider for an ID-JAG naming Audience (RFC 8693,
// requested_token_type id-jag), which the resource's authorization server
// trades for an access token (RFC 7523 jwt-bearer).
type CrossAppAccess struct {
	Pos                         Pos                     `yaml:"-"`
	IdentityProvider            *CrossAppAccessEndpoint `yaml:"identityProvider,required"`
	ResourceAuthorizationServer *CrossAppAccessEndpoint `yaml:"resourceAuthorizationServer,required"`
	// Audience is the resource authorization server's identifier.
	Audience  string   `yaml:"audience,required"`
	Resources []string `yaml:"resources"`
	// Scopes are asked of the identity provider; AccessTokenScopes of
	// the resource server (default Scopes).
	Scopes            []string            `yaml:"scopes"`
	AccessTokenScopes *[]string           `yaml:"accessTokenScopes"`
	SubjectToken      *TokenExchangeToken `yaml:"subjectToken"`
	Cache             *TokenCacheLimit    `yaml:"cache"`
}

// CrossAppAccessEndpoint is one of crossAppAccess's token endpoints.
type CrossAppAccessEndpoint struct {
	Pos        Pos              `yaml:"-"`
	Host       string           `yaml:"host"`
	Path       string           `yaml:"path"`
	ClientAuth *OAuthClientAuth `yaml:"clientAuth,required"`

	Policies Unsupported `yaml:"policies"`
	Service  Unsupported `yaml:"service"`
	Backend  Unsupported `yaml:"backend"`
}

// OAuthClientAuth is how the gateway authenticates to the token endpoint:
// clientSecretBasic (the default: HTTP Basic) or clientSecretPost
// (client_id and client_secret in the form).
type OAuthClientAuth struct {
	Pos          Pos           `yaml:"-"`
	ClientID     string        `yaml:"clientId,required"`
	ClientSecret *FileOrInline `yaml:"clientSecret"`
	Method       string        `yaml:"method"`

	SigningKey        Unsupported `yaml:"signingKey"`
	Certificate       Unsupported `yaml:"certificate"`
	CertificateHeader Unsupported `yaml:"certificateHeader"`
	Alg               Unsupported `yaml:"alg"`
	Kid               Unsupported `yaml:"kid"`
	AssertionAudience Unsupported `yaml:"assertionAudience"`
}

// TokenCacheLimit bounds the cache of exchanged tokens: MaxEntries
// (default 8192, 0 turns caching off) and the lifetime of a token whose
// answer had no expires_in (default 5m).
type TokenCacheLimit struct {
	Pos        Pos      `yaml:"-"`
	MaxEntries *int     `yaml:"maxEntries"`
	DefaultTTL Duration `yaml:"defaultTtl"`
}

// reservedTokenParams are the form parameters additionalParams may not
// replace (agentgateway's list).
var reservedTokenParams = []string{
	"grant_type", "subject_token", "subject_token_type", "actor_token", "actor_token_type",
	"assertion", "audience", "resource", "scope", "requested_token_type", "client_id",
	"client_secret", "client_assertion", "client_assertion_type",
}

func (d *decoder) checkTokenExchange(t *OAuthTokenExchange, path string) {
	if t.Host == "" && !d.hasErrorUnder(path) {
		d.failAt(t.Pos, path, "missing required key \"host\"")
	}
	if t.Path != "" && !strings.HasPrefix(t.Path, "/") {
		d.failAt(t.Pos, path+".path", "the path must start with /, got %q", t.Path)
	}
	switch t.GrantType {
	case "", "tokenExchange":
	case "jwtBearer":
		if t.RequestedTokenType != "" {
			d.failAt(t.Pos, path+".requestedTokenType", "requestedTokenType is only valid with grantType tokenExchange")
		}
	default:
		d.failAt(t.Pos, path+".grantType", "expected tokenExchange or jwtBearer, got %q", t.GrantType)
	}
	switch t.RequestedTokenType {
	case "", TokenTypeAccess, TokenTypeJWT, TokenTypeID:
	case TokenTypeIDJAG:
		d.failAt(t.Pos, path+".requestedTokenType", "%s is only used by backendAuth.crossAppAccess", TokenTypeIDJAG)
	default:
		d.failAt(t.Pos, path+".requestedTokenType", "expected one of %s, %s or %s, got %q", TokenTypeAccess, TokenTypeJWT, TokenTypeID, t.RequestedTokenType)
	}
	d.checkSubjectToken(t.SubjectToken, path+".subjectToken")
	d.checkClientAuth(t.ClientAuth, path+".clientAuth")
	for _, p := range t.AdditionalParams {
		for _, r := range reservedTokenParams {
			if strings.EqualFold(p.Name, r) {
				d.failAt(p.Pos, path+".additionalParams."+p.Name, "%q is set by the gateway and may not be overridden", p.Name)
			}
		}
	}
	if c := t.Cache; c != nil {
		d.checkDuration(c.Pos, path+".cache.defaultTtl", &c.DefaultTTL, true)
	}
}

func (d *decoder) checkSubjectToken(s *TokenExchangeToken, path string) {
	if s == nil {
		return
	}
	if s.TokenType != "" && !strings.Contains(s.TokenType, ":") {
		d.failAt(s.Pos, path+".tokenType", "a token type is an absolute URI such as %s, got %q", TokenTypeAccess, s.TokenType)
	}
	if src := s.Source; src != nil && (src.Header == nil) == (src.Expression == "") && !d.hasErrorUnder(path+".source") {
		d.failAt(src.Pos, path+".source", "set one of header or expression")
	}
}

func (d *decoder) checkClientAuth(c *OAuthClientAuth, cp string) {
	if c != nil {
		switch c.Method {
		case "", "clientSecretBasic":
			if c.ClientSecret == nil && !d.hasErrorUnder(cp) {
				d.failAt(c.Pos, cp, "missing required key \"clientSecret\"")
			}
		case "clientSecretPost":
		case "privateKeyJwt":
			d.failAt(c.Pos, cp+".method", "privateKeyJwt is not supported by tailgate yet")
		default:
			d.failAt(c.Pos, cp+".method", "expected clientSecretBasic, clientSecretPost or privateKeyJwt, got %q", c.Method)
		}
	}
}

func (d *decoder) checkCrossAppAccess(x *CrossAppAccess, path string) {
	for _, n := range []struct {
		name string
		e    *CrossAppAccessEndpoint
	}{{"identityProvider", x.IdentityProvider}, {"resourceAuthorizationServer", x.ResourceAuthorizationServer}} {
		e, ep := n.e, path+"."+n.name
		if e == nil {
			continue
		}
		if e.Host == "" && !d.hasErrorUnder(ep) {
			d.failAt(e.Pos, ep, "missing required key \"host\"")
		}
		if e.Path != "" && !strings.HasPrefix(e.Path, "/") {
			d.failAt(e.Pos, ep+".path", "the path must start with /, got %q", e.Path)
		}
		d.checkClientAuth(e.ClientAuth, ep+".clientAuth")
	}
	d.checkSubjectToken(x.SubjectToken, path+".subjectToken")
	if s := x.SubjectToken; s != nil && s.TokenType == TokenTypeIDJAG {
		d.failAt(s.Pos, path+".subjectToken.tokenType", "the subject token cannot itself be an ID-JAG")
	}
	if c := x.Cache; c != nil {
		d.checkDuration(c.Pos, path+".cache.defaultTtl", &c.DefaultTTL, true)
	}
}

// BackendPolicies are a backend's own policies (backends[].policies):
// how the gateway reaches and authenticates to that backend. A key set
// here replaces the route's for requests sent to this backend.
type BackendPolicies struct {
	Pos                    Pos             `yaml:"-"`
	RequestHeaderModifier  *HeaderModifier `yaml:"requestHeaderModifier"`
	ResponseHeaderModifier *HeaderModifier `yaml:"responseHeaderModifier"`
	BackendTLS             *BackendTLS     `yaml:"backendTLS"`
	BackendAuth            *BackendAuth    `yaml:"backendAuth"`

	Transformations  Unsupported `yaml:"transformations"`
	HTTP             Unsupported `yaml:"http"`
	TCP              Unsupported `yaml:"tcp"`
	BackendTunnel    Unsupported `yaml:"backendTunnel"`
	RequestRedirect  Unsupported `yaml:"requestRedirect"`
	Health           Unsupported `yaml:"health"`
	ExtAuthz         Unsupported `yaml:"extAuthz"`
	Authorization    Unsupported `yaml:"authorization"`
	MCPAuthorization Unsupported `yaml:"mcpAuthorization"`
	MCPGuardrails    Unsupported `yaml:"mcpGuardrails"`
	A2A              Unsupported `yaml:"a2a"`
	InferenceRouting Unsupported `yaml:"inferenceRouting"`
	SessionAffinity  Unsupported `yaml:"sessionAffinity"`
	AI               Unsupported `yaml:"ai"`
}

// AsRoutePolicies is p as a route's policies block, for compiling.
func (p *BackendPolicies) AsRoutePolicies() *RoutePolicies {
	return &RoutePolicies{
		RequestHeaderModifier:  p.RequestHeaderModifier,
		ResponseHeaderModifier: p.ResponseHeaderModifier,
		BackendTLS:             p.BackendTLS,
		BackendAuth:            p.BackendAuth,
	}
}

func (d *decoder) checkBackendPolicies(p *BackendPolicies, isMCP bool, path string) {
	if isMCP {
		d.failAt(p.Pos, path, "policies on an mcp backend are not supported by tailgate yet; set them on the route")
		return
	}
	d.checkTraffic(p.AsRoutePolicies(), path)
}
