package config

import (
	"fmt"
	"net/url"
	"strings"
)

// OIDC is agentgateway's browser login policy
// (crates/agentgateway/src/http/oidc/local.rs, LocalOidcConfig): the
// gateway runs the OpenID Connect authorization-code flow itself and
// keeps the browser's session in a cookie.
//
// The provider is found by discovery (issuer's
// /.well-known/openid-configuration, or the document `discovery` names)
// unless authorizationEndpoint, tokenEndpoint and jwks are all set.
type OIDC struct {
	Pos    Pos    `yaml:"-"`
	Issuer string `yaml:"issuer,required"`
	// AuthorizationEndpoint, TokenEndpoint and JWKS replace discovery;
	// all three or none.
	AuthorizationEndpoint string      `yaml:"authorizationEndpoint"`
	TokenEndpoint         string      `yaml:"tokenEndpoint"`
	JWKS                  *JWKSSource `yaml:"jwks"`
	// TokenEndpointAuth is clientSecretBasic (default) or
	// clientSecretPost; only with the explicit endpoints (discovery
	// reads it from token_endpoint_auth_methods_supported).
	TokenEndpointAuth string `yaml:"tokenEndpointAuth"`
	ClientID          string `yaml:"clientId,required"`
	ClientSecret      string `yaml:"clientSecret,required"`
	// RedirectURI is the absolute callback URL the provider sends the
	// browser back to; its path must reach this policy's route.
	RedirectURI string `yaml:"redirectURI,required"`
	// Scopes are requested besides openid, which is always first.
	Scopes []string `yaml:"scopes"`
	// Discovery replaces the issuer's discovery URL: the OpenID
	// configuration inline (a JSON string), {file: path} or {url: ...}.
	Discovery *JWKSSource `yaml:"discovery"`
}

// checkOIDC applies agentgateway's load-time rules (redirect.rs,
// local.rs resolve).
func (d *decoder) checkOIDC(o *OIDC, path string) {
	if o.Issuer != "" {
		if msg := httpURLProblem(o.Issuer); msg != "" {
			d.failAt(o.Pos, path+".issuer", "%s", msg)
		}
	}
	explicit := 0
	for _, set := range []bool{o.AuthorizationEndpoint != "", o.TokenEndpoint != "", o.JWKS != nil} {
		if set {
			explicit++
		}
	}
	switch {
	case explicit != 0 && explicit != 3:
		d.failAt(o.Pos, path, "authorizationEndpoint, tokenEndpoint and jwks must either all be set or all be omitted")
	case o.Discovery != nil && explicit == 3:
		d.failAt(o.Discovery.Pos, path+".discovery", "must be omitted when authorizationEndpoint, tokenEndpoint and jwks are set")
	case o.TokenEndpointAuth != "" && explicit != 3:
		d.failAt(o.Pos, path+".tokenEndpointAuth", "must be omitted unless authorizationEndpoint, tokenEndpoint and jwks are set (discovery decides it)")
	}
	for key, u := range map[string]string{"authorizationEndpoint": o.AuthorizationEndpoint, "tokenEndpoint": o.TokenEndpoint} {
		if u != "" {
			if msg := httpURLProblem(u); msg != "" {
				d.failAt(o.Pos, path+"."+key, "%s", msg)
			}
		}
	}
	switch o.TokenEndpointAuth {
	case "", "clientSecretBasic", "clientSecretPost":
	default:
		d.failAt(o.Pos, path+".tokenEndpointAuth", "expected clientSecretBasic or clientSecretPost, got %q", o.TokenEndpointAuth)
	}
	if o.Discovery != nil && o.Discovery.URL != "" {
		if msg := httpURLProblem(o.Discovery.URL); msg != "" {
			d.failAt(o.Discovery.Pos, path+".discovery.url", "%s", msg)
		}
	}
	if o.RedirectURI != "" {
		if msg := redirectURIProblem(o.RedirectURI); msg != "" {
			d.failAt(o.Pos, path+".redirectURI", "%s", msg)
		}
	}
}

func httpURLProblem(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "must be an absolute http(s) URL: " + err.Error()
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("must be an absolute http(s) URL, got %q", s)
	case u.Host == "":
		return "must include a host"
	}
	return ""
}

// redirectURIProblem is agentgateway's RedirectUri::parse: an absolute
// http(s) URL without userinfo, query or fragment, whose path is explicit,
// not "/", and free of dot segments and encoded slashes, so that matching
// the callback never depends on path normalization.
func redirectURIProblem(s string) string {
	if msg := httpURLProblem(s); msg != "" {
		return msg
	}
	u, _ := url.Parse(s)
	switch {
	case u.User != nil:
		return "must not contain userinfo"
	case u.RawQuery != "" || u.ForceQuery:
		return "must not contain query parameters"
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "must not contain a fragment"
	case u.EscapedPath() == "" || u.EscapedPath() == "/":
		return "path must be explicit and non-root"
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/")[1:] {
		dec, err := url.PathUnescape(seg)
		switch {
		case err != nil:
			return "path contains invalid percent-encoding"
		case dec == "." || dec == "..":
			return "path must not contain dot segments"
		case strings.ContainsAny(dec, `/\`):
			return "path must not contain encoded slash or backslash characters"
		}
	}
	return ""
}
