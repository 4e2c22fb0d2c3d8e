package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailgate-dev/tailgate/internal/vault"
)

// Environment is a named place automation runs against (e.g. "staging"),
// unique per org.
type Environment struct {
	ID        string
	OrgID     string
	Name      string
	CreatedAt time.Time
}

// CreateEnvironment creates an environment; a name already used in the org
// is ErrConflict. The name is stored as given: validate it first
// (grants.ValidEnvName), since it becomes part of a Tailscale tag.
func (s *Store) CreateEnvironment(ctx context.Context, orgID, name string) (Environment, error) {
	if name == "" {
		return Environment{}, errors.New("store: create environment: empty name")
	}
	e := Environment{ID: newID("env"), OrgID: orgID, Name: name, CreatedAt: s.now().Truncate(time.Millisecond)}
	res, err := s.db.ExecContext(ctx, `INSERT INTO environments (id, org_id, name, created_at)
		SELECT ?, id, ?, ? FROM orgs WHERE id = ?`, e.ID, e.Name, ms(e.CreatedAt), orgID)
	if isUnique(err) {
		return Environment{}, fmt.Errorf("store: environment %q already exists: %w", name, ErrConflict)
	}
	if err != nil {
		return Environment{}, fmt.Errorf("store: create environment: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Environment{}, fmt.Errorf("store: create environment: org: %w", ErrNotFound)
	}
	return e, nil
}

// ListEnvironments lists an org's environments by name.
func (s *Store) ListEnvironments(ctx context.Context, orgID string) ([]Environment, error) {
	return queryAll(ctx, s.db, "list environments", scanEnv, `SELECT id, org_id, name, created_at FROM environments
		WHERE org_id = ? ORDER BY name`, orgID)
}

// GetEnvironment finds an org's environment by name.
func (s *Store) GetEnvironment(ctx context.Context, orgID, name string) (Environment, error) {
	return s.getEnv(ctx, `SELECT id, org_id, name, created_at FROM environments WHERE org_id = ? AND name = ?`, orgID, name)
}

// GetEnvironmentByID finds an org's environment by id.
func (s *Store) GetEnvironmentByID(ctx context.Context, orgID, id string) (Environment, error) {
	return s.getEnv(ctx, `SELECT id, org_id, name, created_at FROM environments WHERE org_id = ? AND id = ?`, orgID, id)
}

func (s *Store) getEnv(ctx context.Context, q string, args ...any) (Environment, error) {
	e, err := scanEnv(s.db.QueryRowContext(ctx, q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return Environment{}, fmt.Errorf("store: environment: %w", ErrNotFound)
	}
	if err != nil {
		return Environment{}, fmt.Errorf("store: get environment: %w", err)
	}
	return e, nil
}

// DeleteEnvironment deletes an org's environment (by id) with its
// verifications and runs. While it still has a connection it is
// ErrConflict: disconnect first, so the policy entries and the OAuth client
// are removed from the tailnet before their record is lost.
func (s *Store) DeleteEnvironment(ctx context.Context, orgID, envID string) error {
	return s.tx(ctx, func(tx queries) error {
		// Lock the environment first, so no connection can be put between
		// the check and the delete (which would cascade to it).
		var id string
		err := tx.QueryRowContext(ctx, `SELECT id FROM environments WHERE id = ? AND org_id = ?`+s.engine.forUpdate(), envID, orgID).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: environment: %w", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: delete environment: %w", err)
		}
		var connected int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM connections WHERE env_id = ? AND org_id = ?`, envID, orgID).Scan(&connected); err != nil {
			return fmt.Errorf("store: delete environment: %w", err)
		}
		if connected > 0 {
			return fmt.Errorf("store: environment is still connected; disconnect it first: %w", ErrConflict)
		}
		return execOne(ctx, tx, "delete environment", "environment", `DELETE FROM environments WHERE id = ? AND org_id = ?`, envID, orgID)
	})
}

func scanEnv(r scanner) (Environment, error) {
	var e Environment
	var created int64
	if err := r.Scan(&e.ID, &e.OrgID, &e.Name, &created); err != nil {
		return Environment{}, err
	}
	e.CreatedAt = fromMS(created)
	return e, nil
}

// ConnectionState is where a connected environment stands.
type ConnectionState string

const (
	// StateConnected: policy written and credential stored, not yet verified.
	StateConnected ConnectionState = "connected"
	// StateVerified: the last verification reached every target.
	StateVerified ConnectionState = "verified"
	// StateFailing: the last verification failed for at least one target.
	StateFailing ConnectionState = "failing"
)

// Connection is the lasting result of connecting an environment.
type Connection struct {
	EnvID string
	State ConnectionState
	// Tag is the environment's tag, "tag:tailgate-<env>".
	Tag string
	// CIDRs are the granted destinations, shown to the admin.
	CIDRs    []netip.Prefix
	Warnings []string
	// Targets are the environment's targets, parsed once when the
	// connection is loaded (stored as host:port).
	Targets []target.Target
	// Control is the control plane the connection was made on; the zero
	// value is the server's own Tailscale.
	Control controlplane.Control
	// Detail is opaque JSON the connect package keeps alongside (the
	// grant plan); stored and returned as is. Must not hold secrets.
	Detail json.RawMessage
	// Credential is the kind of credential the connection keeps: an OAuth
	// client, a federated identity or a pre-auth key. Empty when putting
	// means the control's stored credential (Control.StoredCredential).
	Credential controlplane.CredentialKind
	// OAuthClientID is the credential's id (not secret): the OAuth
	// client's, the federated identity's (its client id) or the pre-auth
	// key's.
	OAuthClientID string
	// Audience is the "aud" a federated identity's ID tokens carry (not
	// secret); empty for other credentials.
	Audience string
	// Secret is the OAuth client secret (or pre-auth key) sealed by
	// package vault; empty for a federated identity, which has none. Never
	// return it from an endpoint; it is left out of JSON so a Connection
	// encoded by mistake does not carry it.
	Secret    vault.Sealed `json:"-"`
	CreatedAt time.Time
	UpdatedAt time.Time
}

// PutConnection stores the connection of one of orgID's environments,
// replacing an earlier one (connecting again) but keeping its CreatedAt.
// It is ErrNotFound if the environment is not orgID's.
func (s *Store) PutConnection(ctx context.Context, orgID string, c Connection) (Connection, error) {
	switch c.State {
	case StateConnected, StateVerified, StateFailing:
	default:
		return Connection{}, fmt.Errorf("store: put connection: unknown state %q", c.State)
	}
	if c.Credential == "" {
		c.Credential = c.Control.StoredCredential()
	}
	if c.Credential == controlplane.FederatedIdentity {
		if c.Tag == "" || c.OAuthClientID == "" || c.Audience == "" || c.Secret.KeyID != "" || len(c.Secret.Ciphertext) > 0 {
			return Connection{}, errors.New("store: put connection: a federated identity needs a tag, a client id and an audience, and has no secret")
		}
	} else if c.Tag == "" || c.OAuthClientID == "" || c.Secret.KeyID == "" || len(c.Secret.Nonce) == 0 || len(c.Secret.Ciphertext) == 0 {
		return Connection{}, errors.New("store: put connection: tag, OAuth client id and sealed secret are required")
	}
	if c.Secret.Nonce == nil {
		c.Secret.Nonce = []byte{}
	}
	if c.Secret.Ciphertext == nil {
		c.Secret.Ciphertext = []byte{}
	}
	cidrs, _ := json.Marshal(nonNil(c.CIDRs))
	warnings, _ := json.Marshal(nonNil(c.Warnings))
	targets, _ := json.Marshal(targetStrings(c.Targets))
	control := c.Control
	if control.ServersOwn() {
		control = controlplane.Control{} // as in rows from before 0002
	}
	detail := []byte("null")
	if len(c.Detail) > 0 {
		if !json.Valid(c.Detail) {
			return Connection{}, errors.New("store: put connection: detail is not valid JSON")
		}
		detail = c.Detail
	}
	now := s.now().Truncate(time.Millisecond)
	err := s.tx(ctx, func(tx queries) error {
		return execOne(ctx, tx, "put connection", "environment", `INSERT INTO connections (env_id, org_id, state, tag, cidrs, warnings, targets, detail,
				control_type, control_url, credential, oauth_client_id, audience, secret_key_id, secret_nonce, secret_ciphertext, created_at, updated_at)
			SELECT id, org_id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM environments WHERE id = ? AND org_id = ?
			ON CONFLICT (env_id) DO UPDATE SET state = excluded.state, tag = excluded.tag, cidrs = excluded.cidrs,
				warnings = excluded.warnings, targets = excluded.targets, detail = excluded.detail,
				control_type = excluded.control_type, control_url = excluded.control_url, credential = excluded.credential,
				oauth_client_id = excluded.oauth_client_id, audience = excluded.audience, secret_key_id = excluded.secret_key_id,
				secret_nonce = excluded.secret_nonce, secret_ciphertext = excluded.secret_ciphertext,
				updated_at = excluded.updated_at`,
			string(c.State), c.Tag, string(cidrs), string(warnings), string(targets), string(detail),
			string(control.Type), control.URL, string(c.Credential), c.OAuthClientID, c.Audience, c.Secret.KeyID, c.Secret.Nonce, c.Secret.Ciphertext, ms(now), ms(now), c.EnvID, orgID)
	})
	if err != nil {
		return Connection{}, err
	}
	return s.GetConnection(ctx, orgID, c.EnvID)
}

// GetConnection returns the connection of one of orgID's environments;
// ErrNotFound if it is not connected (or not orgID's).
func (s *Store) GetConnection(ctx context.Context, orgID, envID string) (Connection, error) {
	var c Connection
	var state, cidrs, warnings, targets, detail, controlType, credential string
	var created, updated int64
	err := s.db.QueryRowContext(ctx, `SELECT env_id, state, tag, cidrs, warnings, targets, detail, control_type, control_url,
			credential, oauth_client_id, audience, secret_key_id, secret_nonce, secret_ciphertext, created_at, updated_at
		FROM connections WHERE env_id = ? AND org_id = ?`, envID, orgID).Scan(
		&c.EnvID, &state, &c.Tag, &cidrs, &warnings, &targets, &detail, &controlType, &c.Control.URL, &credential, &c.OAuthClientID, &c.Audience,
		&c.Secret.KeyID, &c.Secret.Nonce, &c.Secret.Ciphertext, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Connection{}, fmt.Errorf("store: connection: %w", ErrNotFound)
	}
	if err != nil {
		return Connection{}, fmt.Errorf("store: get connection: %w", err)
	}
	c.State, c.CreatedAt, c.UpdatedAt = ConnectionState(state), fromMS(created), fromMS(updated)
	c.Control = controlplane.Control{Type: controlplane.Kind(controlType), URL: c.Control.URL}.Canonical()
	c.Credential = controlplane.CredentialKind(credential)
	if c.Credential == "" {
		c.Credential = c.Control.StoredCredential() // rows from before 0003
	}
	var raw []string
	if err := errors.Join(json.Unmarshal([]byte(cidrs), &c.CIDRs), json.Unmarshal([]byte(warnings), &c.Warnings),
		json.Unmarshal([]byte(targets), &raw)); err != nil {
		return Connection{}, fmt.Errorf("store: get connection %s: stored JSON: %w", envID, err)
	}
	if len(raw) == 0 {
		c.Targets = []target.Target{}
	} else if c.Targets, err = target.ParseList(raw); err != nil {
		return Connection{}, fmt.Errorf("store: get connection %s: stored targets: %w", envID, err)
	}
	if detail != "null" {
		c.Detail = json.RawMessage(detail)
	}
	return c, nil
}

// SetConnectionState changes a connection's state.
func (s *Store) SetConnectionState(ctx context.Context, orgID, envID string, state ConnectionState) error {
	return execOne(ctx, s.db, "set connection state", "connection", `UPDATE connections SET state = ?, updated_at = ? WHERE env_id = ? AND org_id = ?`,
		string(state), ms(s.now()), envID, orgID)
}

// DeleteConnection forgets an environment's connection (after disconnect
// revoked the OAuth client and removed the policy entries).
func (s *Store) DeleteConnection(ctx context.Context, orgID, envID string) error {
	return execOne(ctx, s.db, "delete connection", "connection", `DELETE FROM connections WHERE env_id = ? AND org_id = ?`, envID, orgID)
}

// ConnectedEnvironment names one connected environment, for work that
// spans orgs (the verification schedule).
type ConnectedEnvironment struct {
	OrgID   string
	EnvID   string
	EnvName string
	State   ConnectionState
	// UpdatedAt is when the connection last changed (connect or verify).
	UpdatedAt time.Time
}

// ConnectedEnvironments lists every connected environment of every org,
// least recently updated first. It is for the verification scheduler,
// which works across orgs; API handlers must use the org-scoped methods.
func (s *Store) ConnectedEnvironments(ctx context.Context) ([]ConnectedEnvironment, error) {
	return queryAll(ctx, s.db, "connected environments", func(r scanner) (ConnectedEnvironment, error) {
		var ce ConnectedEnvironment
		var state string
		var updated int64
		if err := r.Scan(&ce.OrgID, &ce.EnvID, &ce.EnvName, &state, &updated); err != nil {
			return ConnectedEnvironment{}, err
		}
		ce.State, ce.UpdatedAt = ConnectionState(state), fromMS(updated)
		return ce, nil
	}, `SELECT c.org_id, c.env_id, e.name, c.state, c.updated_at
		FROM connections c JOIN environments e ON e.id = c.env_id AND e.org_id = c.org_id
		ORDER BY c.updated_at, c.env_id`)
}

// targetStrings is how targets are stored: host:port, as the admin gave them
// once normalised.
func targetStrings(ts []target.Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
