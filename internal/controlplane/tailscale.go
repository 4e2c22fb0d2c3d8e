package controlplane

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

// tailscaleProvider is the server's own Tailscale: connect with a one-time
// API access token, keep a federated identity (or, without an issuer, an
// OAuth client) with scope auth_keys, mint single-use keys with it, and
// join advertising the environment's tag.
type tailscaleProvider struct{ env *Env }

func (p tailscaleProvider) Control() Control { return Control{Type: Tailscale} }

func (p tailscaleProvider) Words() Words {
	return Words{Product: "Tailscale", AdminCredential: "Tailscale API access token"}
}

// CheckAdminCredential rejects what cannot be a Tailscale API access
// token.
func (p tailscaleProvider) CheckAdminCredential(tok string) error {
	bad := func(msg string) error { return &InputError{Field: "api_token", Message: msg} }
	switch {
	case tok == "":
		return bad("missing; create a one-time API access token in the Tailscale admin console")
	case !utf8.ValidString(tok) || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }):
		return bad("contains characters no Tailscale token has")
	case len(tok) > 256:
		return bad("too long to be a Tailscale API access token")
	case strings.HasPrefix(tok, "tskey-client-"), strings.HasPrefix(tok, "tskey-auth-"):
		return bad("this is an OAuth client secret or an auth key; tailgate needs an API access token (tskey-api-...)")
	case !strings.HasPrefix(tok, "tskey-api-"):
		return bad("does not look like a Tailscale API access token (tskey-api-...)")
	}
	return nil
}

func (p tailscaleProvider) AdminClient(token string) tsapi.ControlPlane {
	if p.env.NewAPIClient != nil {
		return p.env.NewAPIClient(token)
	}
	return tsapi.NewWithAPIToken(p.env.APIBaseURL, token)
}

// CanFederate: Tailscale has federated identities.
func (p tailscaleProvider) CanFederate() bool { return true }

// MintingClient: a federated identity exchanges an ID token for an API
// token; an OAuth client its secret.
func (p tailscaleProvider) MintingClient(ctx context.Context, c Credential) tsapi.ControlPlane {
	if c.Kind == FederatedIdentity {
		return tsapi.NewWithFederation(p.env.APIBaseURL, c.ID, c.IDToken)
	}
	if p.env.NewOAuthClient != nil {
		return p.env.NewOAuthClient(ctx, c.ID, c.Secret)
	}
	return tsapi.NewWithOAuth(ctx, p.env.APIBaseURL, c.ID, c.Secret, []string{"auth_keys"})
}

func (p tailscaleProvider) SingleUseKeys() bool { return true }

func (p tailscaleProvider) JoinURL() string { return p.env.ControlURL }

// JoinTags: a node joining with an OAuth-minted key advertises the tag
// the key was minted for.
func (p tailscaleProvider) JoinTags(tag string) []string { return []string{tag} }

func (p tailscaleProvider) TagOwners(context.Context, tsapi.ControlPlane) ([]string, error) {
	return nil, nil
}
