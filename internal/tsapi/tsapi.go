package tsapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// ControlPlane is what tailgate needs from a tailnet's control plane.
// Client implements it for Tailscale; a headscale implementation offers
// the same calls (with OAuth clients mapped to its closest equivalent).
type ControlPlane interface {
	// Policy returns the policy file as the customer wrote it (HuJSON,
	// comments kept) with the ETag to pass back to SetPolicy.
	Policy(ctx context.Context) (Policy, error)
	// SetPolicy replaces the whole policy file. A non-empty ifMatchETag
	// makes the write conditional: if the policy changed since it was read,
	// the error matches ErrPreconditionFailed and nothing was written.
	// An invalid policy yields a *PolicyInvalidError.
	SetPolicy(ctx context.Context, hujson []byte, ifMatchETag string) error
	// ValidatePolicy checks a policy file (including its tests) without
	// saving it; an invalid policy yields a *PolicyInvalidError.
	ValidatePolicy(ctx context.Context, hujson []byte) error
	// Settings reports tailnet settings that change how tailgate may act.
	Settings(ctx context.Context) (Settings, error)
	// CreateOAuthClient creates an OAuth client with the given scopes and
	// tags. Its secret is returned once; store it encrypted or drop it.
	CreateOAuthClient(ctx context.Context, scopes, tags []string, description string) (OAuthClient, error)
	// CreateFederatedIdentity creates a federated identity (workload
	// identity federation): a trust credential without a secret, which an
	// ID token from req.Issuer with a matching subject and audience is
	// exchanged for an API token with. A control plane that cannot
	// federate answers ErrFederationUnsupported.
	CreateFederatedIdentity(ctx context.Context, req FederatedIdentityRequest) (FederatedIdentity, error)
	// CreateAuthKey mints an auth key for joining one device (or several,
	// if Reusable).
	CreateAuthKey(ctx context.Context, req AuthKeyRequest) (AuthKey, error)
	// Devices lists every device with its addresses and subnet routes.
	Devices(ctx context.Context) ([]Device, error)
	// ApproveRoutes enables routes on a device in addition to those already
	// enabled; it never disables a route.
	ApproveRoutes(ctx context.Context, deviceID string, routes []netip.Prefix) error
	// DeleteDevice removes a device from the tailnet.
	DeleteDevice(ctx context.Context, deviceID string) error
	// DeleteKey revokes an auth key, API token or OAuth client by id.
	DeleteKey(ctx context.Context, keyID string) error
}

// Policy is a tailnet policy file and the version it was read at.
type Policy struct {
	HuJSON []byte
	ETag   string // quoted, as the API sends it; pass it back unchanged
}

// Settings are the tailnet settings tailgate looks at before connecting.
type Settings struct {
	// ACLsExternallyManaged is set when the policy file is managed from
	// outside (GitOps): a write through the API would be overwritten by the
	// next sync, so connect must say so instead of writing silently.
	ACLsExternallyManaged bool
	// ACLsExternalLink points at where the policy is managed, if known.
	ACLsExternalLink string
	// TailnetLock would report Tailnet Lock, under which OAuth-minted auth
	// keys cannot join until signed. API v2 settings do not expose it, so
	// Client always reports false; a join failing with a lock error is how
	// it shows up.
	TailnetLock bool
}

// Device is a node of the tailnet.
type Device struct {
	ID               string // the stable node id ("nodeId")
	Name             string // MagicDNS FQDN, e.g. "staging-box.tail0000.ts.net"
	Hostname         string
	User             string
	Addresses        []netip.Addr
	Tags             []string
	Ephemeral        bool
	AdvertisedRoutes []netip.Prefix
	EnabledRoutes    []netip.Prefix
	Created          time.Time
	LastSeen         time.Time // zero if the device is connected now or never seen
}

// OAuthClient is a newly created OAuth client. Secret is shown only once.
type OAuthClient struct {
	ID     string
	Secret string
}

// String keeps the secret out of logs and %v formatting.
func (c OAuthClient) String() string {
	return fmt.Sprintf("OAuthClient{ID:%s Secret:[redacted]}", c.ID)
}

// GoString keeps the secret out of %#v formatting.
func (c OAuthClient) GoString() string { return c.String() }

// LogValue keeps the secret out of structured logs.
func (c OAuthClient) LogValue() slog.Value { return slog.StringValue(c.String()) }

// FederatedIdentityRequest describes a federated identity to create.
type FederatedIdentityRequest struct {
	Scopes []string
	Tags   []string
	// Issuer is the OIDC issuer URL whose ID tokens are trusted; the
	// control plane finds its keys by OIDC discovery.
	Issuer string
	// Subject is the "sub" an ID token must carry.
	Subject string
	// Audience is the "aud" an ID token must carry; empty lets the
	// control plane generate one (returned in FederatedIdentity).
	Audience    string
	Description string
}

// FederatedIdentity is a created federated identity. It has no secret:
// ID is the client id an ID token is exchanged with, Audience the "aud"
// the token must carry.
type FederatedIdentity struct {
	ID       string
	Issuer   string
	Subject  string
	Audience string
}

// AuthKeyRequest describes an auth key to mint.
type AuthKeyRequest struct {
	Ephemeral     bool // the device is removed when it goes offline
	Preauthorized bool // the device needs no admin approval
	Reusable      bool // more than one device may join with it
	Tags          []string
	// Expiry is the key's lifetime, rounded up to whole seconds; zero
	// means the API's default (90 days), so callers should always set it.
	Expiry      time.Duration
	Description string // at most 50 characters on Tailscale
}

// AuthKey is a newly minted auth key. Key is the secret, shown only once.
type AuthKey struct {
	ID      string
	Key     string
	Expires time.Time
}

// String keeps the secret out of logs and %v formatting.
func (k AuthKey) String() string {
	return fmt.Sprintf("AuthKey{ID:%s Key:[redacted] Expires:%s}", k.ID, k.Expires.Format(time.RFC3339))
}

// GoString keeps the secret out of %#v formatting.
func (k AuthKey) GoString() string { return k.String() }

// LogValue keeps the secret out of structured logs.
func (k AuthKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Errors to test with errors.Is; every API failure is also an *APIError
// (or a *PolicyInvalidError) that carries the status and message.
var (
	// ErrUnauthorized: the token is unknown, expired or revoked, or the
	// OAuth client credentials are wrong (HTTP 401).
	ErrUnauthorized = errors.New("credentials rejected")
	// ErrForbidden: the credentials are valid but lack the permission or
	// scope for this call (HTTP 403).
	ErrForbidden = errors.New("permission denied")
	// ErrNotFound: the device or key does not exist (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrPreconditionFailed: the policy changed since it was read (HTTP
	// 412); read it again, reapply the edit and retry.
	ErrPreconditionFailed = errors.New("policy changed since it was read")
	// ErrFederationUnsupported: the control plane has no federated
	// identities (headscale); keep a stored credential instead.
	ErrFederationUnsupported = errors.New("control plane cannot federate identities")
)

// APIError is a failed API call. Message is the control plane's own
// sentence, with anything that looks like a credential redacted.
type APIError struct {
	Op      string // what tailgate was doing, e.g. "set policy"
	Status  int    // HTTP status
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("tsapi: %s: %s (HTTP %d)", e.Op, e.Message, e.Status)
}

// Is maps the status onto the sentinel errors.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrPreconditionFailed:
		return e.Status == http.StatusPreconditionFailed
	}
	return false
}

// PolicyInvalidError is a policy file the control plane refused, from
// validation or from a write (including failing policy tests).
type PolicyInvalidError struct {
	Message string
	// Details are per-entry reasons, e.g. failed tests as
	// "alice@example.com: tag:x:443: want: Accept, got: Drop".
	Details []string
}

func (e *PolicyInvalidError) Error() string {
	if len(e.Details) == 0 {
		return "tsapi: policy invalid: " + e.Message
	}
	return "tsapi: policy invalid: " + e.Message + ": " + strings.Join(e.Details, "; ")
}
