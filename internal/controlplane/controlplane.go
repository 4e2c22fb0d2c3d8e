// Package controlplane knows each kind of control plane a tailnet can run
// on (Tailscale, headscale) and answers, for one of them, everything the
// rest of tailgate must not ask about by name: how to check an admin's
// one-time credential, which client connects and disconnects with it,
// which client mints keys with the stored credential, where nodes join,
// which tags they advertise, who owns the environment's tag, and the words
// messages use for it.
//
// A [Provider] is chosen once, from the connection's [Control], by
// [Env.For]. No package outside this one compares control types.
package controlplane

import (
	"context"
	"errors"
	"fmt"

	"github.com/tailgate-dev/tailgate/internal/headscale"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

// Kind is a type of control plane.
type Kind string

const (
	// Tailscale is Tailscale's SaaS control plane (or the sandbox's
	// stand-in): the server's own, configured once.
	Tailscale Kind = "tailscale"
	// Headscale is a self-hosted headscale server, named per connection.
	Headscale Kind = "headscale"
)

// Control names the control plane an environment's tailnet runs on. The
// zero value is the server's own Tailscale. It is not secret: a connection
// keeps it so that verify and runs mint keys and join there.
type Control struct {
	// Type is "tailscale" (or empty) or "headscale".
	Type Kind `json:"type,omitempty"`
	// URL is the headscale server_url, e.g. "https://hs.example.com".
	URL string `json:"url,omitempty"`
}

// Canonical is c with the empty type spelled out, so two spellings of
// the server's own Tailscale compare equal.
func (c Control) Canonical() Control {
	if c.Type == "" {
		c.Type = Tailscale
	}
	return c
}

// ServersOwn reports whether c is the server's own control plane (the
// zero value), which a connection need not record.
func (c Control) ServersOwn() bool { return c.Canonical() == Control{Type: Tailscale} }

// CredentialKind is the kind of durable credential a connection keeps, as
// connect results and status report it.
type CredentialKind string

// Credentials, strongest first (see docs/design.md).
const (
	// FederatedIdentity is a Tailscale federated identity: tailgate is
	// the OIDC issuer and stores nothing secret; verify and runs exchange
	// a five-minute ID token for an API token that mints keys.
	FederatedIdentity CredentialKind = "federated_identity"
	// OAuthClient is a Tailscale OAuth client with scope auth_keys and
	// the environment's tag; its secret is sealed.
	OAuthClient CredentialKind = "oauth_client"
	// PreAuthKey is a headscale reusable, ephemeral, tagged pre-auth key,
	// sealed; it never leaves the servers.
	PreAuthKey CredentialKind = "preauth_key"
)

// StoredCredential is the credential with a secret that c's connections
// keep when they do not federate: an OAuth client on Tailscale, a
// pre-auth key on headscale.
func (c Control) StoredCredential() CredentialKind {
	if c.Canonical().Type == Headscale {
		return PreAuthKey
	}
	return OAuthClient
}

// InputError is a Control or credential an admin gave that cannot be
// used, in words the admin can act on. Field names the input.
type InputError struct {
	Field   string // "control.type", "control.url" or "api_token"
	Message string
}

func (e *InputError) Error() string { return e.Field + ": " + e.Message }

// Words are how messages name a control plane and its credential.
type Words struct {
	// Product is "Tailscale" or "headscale".
	Product string
	// AdminCredential is the one-time credential connect and disconnect
	// take: "Tailscale API access token", "headscale API key".
	AdminCredential string
}

// Provider is one control plane, for one connection.
type Provider interface {
	// Control is the control plane this provider talks to, canonical.
	Control() Control
	// Words name it in messages.
	Words() Words
	// CheckAdminCredential refuses, before any network call, what cannot
	// be this control's admin credential. Its *InputError never repeats
	// the credential.
	CheckAdminCredential(token string) error
	// AdminClient connects and disconnects with the admin's one-time
	// credential.
	AdminClient(token string) tsapi.ControlPlane
	// CanFederate reports whether connect may create a federated identity
	// here instead of storing a credential with a secret.
	CanFederate() bool
	// MintingClient mints auth keys with the environment's credential (a
	// federated identity, an OAuth client, or a headscale pre-auth key).
	MintingClient(ctx context.Context, c Credential) tsapi.ControlPlane
	// SingleUseKeys reports whether the stored credential mints a fresh
	// single-use key per node (Tailscale's OAuth client) rather than being
	// the key itself (headscale's reusable pre-auth key). Only a single-use
	// key may leave the servers, for a runner's host to join with.
	SingleUseKeys() bool
	// JoinURL is where the environment's nodes join ("" is Tailscale's).
	JoinURL() string
	// JoinTags are the tags a joining node advertises.
	JoinTags(tag string) []string
	// TagOwners are who owns the environment's tag in the policy; nil
	// keeps the planner's default (autogroup:admin).
	TagOwners(ctx context.Context, admin tsapi.ControlPlane) ([]string, error)
}

// Credential is an environment's credential, opened for one operation:
// what a minting client authenticates with.
type Credential struct {
	Kind CredentialKind
	// ID is the OAuth client's, federated identity's or pre-auth key's id.
	ID string
	// Secret is the OAuth client secret or the pre-auth key; empty for a
	// federated identity.
	Secret string
	// Tag is the environment's tag.
	Tag string
	// IDToken signs a fresh ID token for a federated identity.
	IDToken func(ctx context.Context) (string, error)
}

// Env is the server's configuration that providers draw on.
type Env struct {
	// APIBaseURL is the Tailscale API ("" = https://api.tailscale.com), or
	// the sandbox's stand-in.
	APIBaseURL string
	// ControlURL is where Tailscale nodes join ("" = Tailscale's).
	ControlURL string
	// Outbound decides which addresses a self-hosted control URL, chosen
	// by an org admin, may reach; nil refuses link-local, metadata,
	// loopback and private addresses.
	Outbound *outbound.Policy
	// NewAPIClient and NewOAuthClient build Tailscale clients; nil means
	// tsapi's. Tests use them to inject failures.
	NewAPIClient   func(apiToken string) tsapi.ControlPlane
	NewOAuthClient func(ctx context.Context, clientID, secret string) tsapi.ControlPlane
}

// For returns the provider for c, or an *InputError when c names no
// control plane tailgate can use.
func (e *Env) For(c Control) (Provider, error) {
	switch c.Type {
	case "", Tailscale:
		if c.URL != "" {
			return nil, &InputError{Field: "control.url", Message: "only a headscale control takes a URL"}
		}
		return tailscaleProvider{env: e}, nil
	case Headscale:
		if err := headscale.CheckURL(c.URL); err != nil {
			return nil, &InputError{Field: "control.url", Message: err.Error()}
		}
		return headscaleProvider{env: e, url: c.URL}, nil
	}
	return nil, &InputError{Field: "control.type", Message: fmt.Sprintf("%q is not tailscale or headscale", c.Type)}
}

// IsInputError reports whether err is an *InputError.
func IsInputError(err error) bool {
	var ie *InputError
	return errors.As(err, &ie)
}
