// Package connect runs the three moments of private network access for one
// environment: connect, verify and disconnect.
//
// # Overview
//
// Connect takes an org admin's one-time Tailscale API token and the
// environment's targets, and leaves behind exactly three things:
//
//   - a least-privilege grant in the customer's tailnet policy, for the tag
//     tag:tailgate-<env>, edited as HuJSON so the customer's file is kept
//     byte for byte (package grants);
//   - the environment's durable credential, the strongest the control
//     allows: a federated identity that trusts this server's ID tokens
//     (Service.Issuer set, Tailscale; nothing secret is stored), else an
//     OAuth client with scope auth_keys and that tag only (a pre-auth key
//     on headscale);
//   - its id, and a secret if it has one, sealed with AES-256-GCM
//     (package vault) and stored (package store). No answer ever
//     contains a secret.
//
// The API token lives only in the request: it is never stored, logged or
// echoed in an error. A failure after the policy write rolls everything
// back, and the error says which [Step] failed and why.
//
// Verify opens the credential (a federated identity exchanges a
// five-minute ID token for an API token; an OAuth client its sealed
// secret), mints a single-use, ephemeral,
// pre-authorized auth key that expires in minutes, joins the tailnet as an
// ephemeral node (package tailnet), and checks every target step by step:
// DNS through the tailnet, TCP through the tailnet only, TLS and HTTP. Each
// step has a verdict and a hint a person can act on.
//
// Disconnect takes the API token again (the stored credential may only
// mint keys), removes exactly the environment's policy entries, revokes the
// OAuth client and deletes the stored secret.
//
// # Usage
//
//	svc := &connect.Service{Store: st, Vault: keyring, APIBaseURL: apiURL, ControlURL: controlURL}
//	res, err := svc.Connect(ctx, connect.Request{OrgID: org, Env: "staging", APIToken: tok, Targets: targets})
//	ver, err := svc.Verify(ctx, org, "staging")
//	err = svc.Disconnect(ctx, org, "staging", tok)
package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/controlplane"

	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailgate-dev/tailgate/internal/grants"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

// Store is what connect keeps: the subset of *store.Store it uses, so
// tests can make a step fail.
type Store interface {
	GetEnvironment(ctx context.Context, orgID, name string) (store.Environment, error)
	GetConnection(ctx context.Context, orgID, envID string) (store.Connection, error)
	PutConnection(ctx context.Context, orgID string, c store.Connection) (store.Connection, error)
	DeleteConnection(ctx context.Context, orgID, envID string) error
	AddVerification(ctx context.Context, orgID string, v store.Verification) (store.Verification, error)
	LatestVerification(ctx context.Context, orgID, envID string) (store.Verification, error)
}

// Service connects, verifies and disconnects environments. Its fields are
// set once before use.
type Service struct {
	Store Store
	Vault *vault.Keyring
	// APIBaseURL is the Tailscale API ("" = https://api.tailscale.com), or
	// the sandbox's stand-in.
	APIBaseURL string
	// ControlURL is the coordination server verify and run nodes join
	// ("" = Tailscale's).
	ControlURL string
	// Logger receives structured logs; never a secret.
	Logger *slog.Logger
	// NewAPIClient and NewOAuthClient build control-plane clients; nil
	// means tsapi's Tailscale implementation. Tests use them to inject
	// failures, self-hosted control servers to plug in.
	NewAPIClient   func(apiToken string) tsapi.ControlPlane
	NewOAuthClient func(ctx context.Context, clientID, secret string) tsapi.ControlPlane
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// KeyExpiry is how long verify's auth keys live; 5 minutes when zero.
	KeyExpiry time.Duration
	// Outbound decides which addresses a self-hosted control URL, chosen
	// by an org admin, may reach; nil refuses link-local, metadata,
	// loopback and private addresses (package outbound). Tests and the
	// sandbox pass outbound.AllowLoopback().
	Outbound *outbound.Policy
	// Issuer, when set (tailgate serve --public-url), makes connect create
	// a federated identity that trusts its ID tokens instead of an OAuth
	// client, on controls that can federate (Tailscale): nothing secret is
	// stored. *issuer.Issuer implements it. Nil keeps OAuth clients.
	Issuer IDTokenIssuer
}

// IDTokenIssuer signs ID tokens for federated identities.
type IDTokenIssuer interface {
	// IssuerURL is the iss of its tokens, which federated identities trust.
	IssuerURL() string
	// Sign returns an ID token for subject and audience, expiring after ttl.
	Sign(ctx context.Context, subject, audience string, ttl time.Duration) (string, error)
}

// Subject is the ID token subject of an environment's federated
// identity: tailgate:<org id>:<env name>.
func Subject(orgID, env string) string { return "tailgate:" + orgID + ":" + env }

// Request is one connect call.
type Request struct {
	OrgID    string
	Env      string
	APIToken string
	Targets  []string
	// Control is the control server to connect on; the zero value is
	// the Service's (Tailscale). For headscale, APIToken is a headscale
	// API key, used for this call only, like a Tailscale API token.
	Control controlplane.Control
}

// Result is what connect did: safe to show to the admin as is.
type Result struct {
	Env      string          `json:"environment"`
	State    string          `json:"state"`
	Tag      string          `json:"tag"`
	CIDRs    []netip.Prefix  `json:"granted_cidrs"`
	Grants   []grants.Grant  `json:"grants"`
	Targets  []TargetSummary `json:"targets"`
	Warnings []string        `json:"warnings"`
	// PolicyWritten is false when the policy already held exactly these
	// grants (nothing to write).
	PolicyWritten bool `json:"policy_written"`
	// Credential is the kind of credential connect keeps:
	// federated_identity (nothing secret stored), oauth_client or
	// preauth_key (a secret, sealed).
	Credential controlplane.CredentialKind `json:"credential"`
	// OAuthClientID names the credential (never a secret): the OAuth
	// client's id, the federated identity's client id, or the pre-auth
	// key's id.
	OAuthClientID string `json:"oauth_client_id"`
}

// TargetSummary is one planned target.
type TargetSummary struct {
	Target  string   `json:"target"`
	Kind    string   `json:"kind"`
	Granted []string `json:"granted"`
	Warning string   `json:"warning,omitempty"`
}

// Step names a step of connect or disconnect, for errors.
type Step string

// The steps of connect and disconnect, in order.
const (
	StepInput        Step = "input"
	StepSettings     Step = "read tailnet settings"
	StepDevices      Step = "list devices"
	StepPlan         Step = "plan grants"
	StepReadPolicy   Step = "read policy"
	StepEditPolicy   Step = "edit policy"
	StepValidate     Step = "validate policy"
	StepWritePolicy  Step = "write policy"
	StepCreateClient Step = "create OAuth client"
	// StepCreateIdentity replaces StepCreateClient when connect federates.
	StepCreateIdentity Step = "create federated identity"
	StepSeal           Step = "encrypt credential"
	StepStore          Step = "store credential"
	StepRevokeClient   Step = "revoke OAuth client"
)

// Error is a failed step, with a stable code for API answers and a
// sentence a person can act on. It never holds a secret.
type Error struct {
	Step Step
	// Code is machine-readable, from the one registry (package errcode).
	Code errcode.Code
	// Message is for people.
	Message string
	// Fragment is the HuJSON to paste when the policy is managed from Git.
	Fragment string
	// RolledBack lists what was undone after the failure.
	RolledBack []string
	Err        error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s", e.Step, e.Message)
	if len(e.RolledBack) > 0 {
		msg += fmt.Sprintf(" (rolled back: %v)", e.RolledBack)
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// stepErrors classify step failures into *Error, naming the control plane
// in its own words.
type stepErrors struct{ words controlplane.Words }

// errorsFor is stepErrors in p's words.
func errorsFor(p controlplane.Provider) stepErrors { return stepErrors{p.Words()} }

// stepError classifies err from step, for steps that talk to no control
// plane (or the server's own Tailscale).
func stepError(step Step, err error) *Error { return stepErrors{}.at(step, err) }

// at classifies err from step into an *Error.
func (se stepErrors) at(step Step, err error) *Error {
	w := se.words
	if w.Product == "" {
		w = controlplane.Words{Product: "Tailscale", AdminCredential: "Tailscale API access token"}
	}
	e := &Error{Step: step, Err: err, Code: errcode.Upstream, Message: err.Error()}
	var te *target.Error
	var ee *grants.EnvError
	var pe *tsapi.PolicyInvalidError
	switch {
	case errors.As(err, &te), errors.As(err, &ee):
		e.Code = errcode.BadInput
	case errors.Is(err, tsapi.ErrUnauthorized):
		e.Code = errcode.TailscaleUnauthorized
		e.Message = fmt.Sprintf("%s refused the API token (malformed, expired or revoked); create a new one-time %s", w.Product, w.AdminCredential)
	case errors.Is(err, tsapi.ErrForbidden):
		e.Code = errcode.TailscaleForbidden
		e.Message = "the API token lacks permission for this step (it needs to read devices and write the policy file); use a token from an admin"
	case errors.As(err, &pe):
		e.Code = errcode.PolicyInvalid
		e.Message = w.Product + " rejected the edited policy: " + pe.Error()
	case errors.Is(err, tsapi.ErrPreconditionFailed):
		e.Code = errcode.PolicyConflict
		e.Message = "the policy file kept changing while tailgate edited it; try again"
	case errors.Is(err, store.ErrNotFound):
		e.Code = errcode.NotFound
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		e.Code = errcode.Upstream
		e.Message = "timed out talking to the " + w.Product + " API"
	}
	if step == StepPlan && e.Code == errcode.Upstream {
		e.Code = errcode.BadInput
	}
	refusedOutbound(e)
	return e
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}
