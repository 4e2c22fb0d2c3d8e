package connect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/issuer"
	"github.com/tailgate-dev/tailgate/internal/redact"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

// StepJoin is joining the tailnet with the environment's credential.
const StepJoin Step = "join tailnet"

const defaultAuthKeyExpiry = 5 * time.Minute

// Credential is an environment's stored credential, opened for one
// operation: it mints keys and joins nodes, and keeps its secret inside.
// Verify and runs join only through it, so every node tailgate joins gets
// the same key: single-use, ephemeral, pre-authorized, with the
// environment's tag, expiring in minutes.
type Credential struct {
	Env  store.Environment
	Conn store.Connection

	provider  controlplane.Provider
	minting   tsapi.ControlPlane
	keyExpiry time.Duration
	errs      stepErrors
	issuerURL string // for hints, when federated
}

// OpenCredential decrypts the environment's stored credential. The secret
// stays inside the returned Credential.
func (s *Service) OpenCredential(ctx context.Context, orgID, envName string) (Credential, error) {
	env, err := s.Store.GetEnvironment(ctx, orgID, envName)
	if err != nil {
		return Credential{}, stepError(StepInput, err)
	}
	conn, err := s.Store.GetConnection(ctx, orgID, env.ID)
	if errors.Is(err, store.ErrNotFound) {
		return Credential{}, &Error{Step: StepInput, Code: errcode.NotConnected, Err: err,
			Message: fmt.Sprintf("environment %q has no private network connected; connect it first", envName)}
	}
	if err != nil {
		return Credential{}, stepError(StepInput, err)
	}
	cred := controlplane.Credential{Kind: conn.Credential, ID: conn.OAuthClientID, Tag: conn.Tag}
	if conn.Credential == controlplane.FederatedIdentity {
		if s.Issuer == nil {
			return Credential{}, &Error{Step: StepInput, Code: errcode.CredentialRevoked,
				Message: fmt.Sprintf("environment %q was connected with a federated identity, but this server is not an OIDC issuer; start it with --public-url (the URL it had at connect), or connect the environment again", envName)}
		}
		iss, subject, audience := s.Issuer, Subject(orgID, env.Name), conn.Audience
		cred.IDToken = func(ctx context.Context) (string, error) {
			return iss.Sign(ctx, subject, audience, IDTokenLifetime)
		}
	} else {
		secret, err := s.Vault.Open(conn.Secret, env.ID, vault.PurposeOAuthClientSecret)
		if err != nil {
			return Credential{}, &Error{Step: StepSeal, Code: errcode.Internal, Err: err,
				Message: "the stored credential cannot be decrypted with the configured key; was the key file replaced?"}
		}
		cred.Secret = string(secret)
	}
	return s.credential(ctx, env, conn, cred)
}

// IDTokenLifetime is how long an ID token verify or a run signs lives: it
// is exchanged at once, for one key.
const IDTokenLifetime = 5 * time.Minute

// credential is the connection's opened credential, on the connection's
// control plane.
func (s *Service) credential(ctx context.Context, env store.Environment, conn store.Connection, cred controlplane.Credential) (Credential, error) {
	p, err := s.provider(conn.Control)
	if err != nil {
		return Credential{}, err
	}
	exp := s.KeyExpiry
	if exp == 0 {
		exp = defaultAuthKeyExpiry
	}
	c := Credential{Env: env, Conn: conn, provider: p, keyExpiry: exp, errs: errorsFor(p),
		minting: p.MintingClient(ctx, cred)}
	if s.Issuer != nil {
		c.issuerURL = s.Issuer.IssuerURL()
	}
	return c, nil
}

// MintKey mints one auth key for a node of this environment. Join uses
// it; it is exported for tests that join from another process.
func (c Credential) MintKey(ctx context.Context, purpose string) (tsapi.AuthKey, error) {
	key, err := c.minting.CreateAuthKey(ctx, tsapi.AuthKeyRequest{
		Ephemeral: true, Preauthorized: true, Reusable: false,
		Tags: []string{c.Conn.Tag}, Expiry: c.keyExpiry,
		Description: clientDescription("tailgate " + purpose + " " + c.Env.Name),
	})
	if err != nil {
		e := c.errs.at("mint auth key", err)
		if e.Code == errcode.TailscaleUnauthorized || e.Code == errcode.TailscaleForbidden {
			e.Code = errcode.CredentialRevoked
			e.Message = fmt.Sprintf("the environment's stored credential was refused by %s (revoked or lost its permissions); connect the environment again", c.provider.Words().Product)
			if c.Conn.Credential == controlplane.FederatedIdentity {
				e.Message = c.federationRefused(err)
			}
		}
		return tsapi.AuthKey{}, e
	}
	return key, nil
}

// federationRefused says why the control refused the environment's
// federated identity, in its words, and what to do.
func (c Credential) federationRefused(err error) string {
	reason := err.Error()
	var ae *tsapi.APIError
	if errors.As(err, &ae) {
		reason = strings.TrimPrefix(ae.Message, "federated identity refused the ID token: ")
	}
	return fmt.Sprintf("%s refused tailgate's ID token for the environment's federated identity %s (%s). "+
		"If the identity was deleted or changed in the %s admin console, connect the environment again; "+
		"otherwise check that %s%s is reachable from %s and that this server's clock is right",
		c.provider.Words().Product, c.Conn.OAuthClientID, reason, c.provider.Words().Product,
		c.issuerURL, issuer.DiscoveryPath, c.provider.Words().Product)
}

// SingleUseKeys reports whether a key minted here may be handed to a
// runner's host (see controlplane.Provider).
func (c Credential) SingleUseKeys() bool { return c.provider.SingleUseKeys() }

// JoinOptions are how a node joins with key: at the control's join URL,
// advertising the tags the control expects, accepting subnet routes.
func (c Credential) JoinOptions(key tsapi.AuthKey, purpose string) tailnet.JoinOptions {
	return tailnet.JoinOptions{
		ControlURL:   c.provider.JoinURL(),
		AuthKey:      key.Key,
		Hostname:     nodeName(purpose, c.Env.Name),
		Tags:         c.provider.JoinTags(c.Conn.Tag),
		AcceptRoutes: true,
	}
}

// Join mints a key and joins a new ephemeral node for purpose ("verify",
// "run"). A join that fails is a join_failed *Error.
func (c Credential) Join(ctx context.Context, purpose string) (*tailnet.Node, error) {
	key, err := c.MintKey(ctx, purpose)
	if err != nil {
		return nil, err
	}
	node, err := tailnet.Join(ctx, c.JoinOptions(key, purpose))
	if err != nil {
		return nil, &Error{Step: StepJoin, Code: errcode.JoinFailed, Err: err,
			Message: fmt.Sprintf("the %s node could not join the tailnet (%s); check that the environment's private network status still shows connected, then retry",
				purpose, redact.Secrets(err.Error(), key.Key))}
	}
	return node, nil
}

// Leave logs the node out, which removes an ephemeral node at once; as a
// backstop it deletes the device through the API, which works only if the
// credential may manage devices (the default auth_keys-only credential may
// not; the node is ephemeral either way).
func (c Credential) Leave(node *tailnet.Node, log interface{ Debug(string, ...any) }) {
	ip := node.IPv4()
	node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	devs, err := c.minting.Devices(ctx)
	if err != nil {
		log.Debug("backstop device delete unavailable", "err", err)
		return
	}
	for _, d := range devs {
		for _, a := range d.Addresses {
			if a == ip {
				c.minting.DeleteDevice(ctx, d.ID)
			}
		}
	}
}

// nodeName is a unique hostname for a node tailgate joins for env.
func nodeName(purpose, env string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return fmt.Sprintf("tailgate-%s-%s-%s", purpose, env, hex.EncodeToString(b))
}
