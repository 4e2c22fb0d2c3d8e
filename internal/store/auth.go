package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Org is a customer organisation: the unit of tenancy.
type Org struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// Role is what an API token may do.
type Role string

const (
	// RoleAdmin manages environments: connect, verify, disconnect.
	RoleAdmin Role = "admin"
	// RoleRunner only starts and ends runs.
	RoleRunner Role = "runner"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleRunner }

// Token describes an API token; it never holds the token itself.
type Token struct {
	ID        string
	OrgID     string
	Name      string
	Role      Role
	CreatedAt time.Time
	RevokedAt time.Time // zero while valid
}

// Principal is who an authenticated request acts as.
type Principal struct {
	OrgID   string
	TokenID string
	Role    Role
}

// TokenPrefix starts every tailgate API token, so one found in a log or a
// repository is recognisable (and scanners can be taught the pattern).
const TokenPrefix = "tg_"

// tokenRandomBytes is the token's entropy: 256 bits.
const tokenRandomBytes = 32

// CreateOrg creates an organisation.
func (s *Store) CreateOrg(ctx context.Context, name string) (Org, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return Org{}, errors.New("store: create org: empty name")
	}
	o := Org{ID: newID("org"), Name: name, CreatedAt: s.now().Truncate(time.Millisecond)}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)`,
		o.ID, o.Name, ms(o.CreatedAt)); err != nil {
		return Org{}, fmt.Errorf("store: create org: %w", err)
	}
	return o, nil
}

// firstOrgLock is the PostgreSQL advisory lock key that serialises
// CreateFirstOrg across processes: "tg-first" in ASCII.
const firstOrgLock int64 = 0x74672d6669727374

// CreateFirstOrg creates organisation name if the database has none, and
// reports whether it did. Replicas starting together on a new database
// create one first org between them, not one each.
func (s *Store) CreateFirstOrg(ctx context.Context, name string) (Org, bool, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return Org{}, false, errors.New("store: create org: empty name")
	}
	o := Org{ID: newID("org"), Name: name, CreatedAt: s.now().Truncate(time.Millisecond)}
	created := false
	err := s.tx(ctx, func(tx queries) error {
		// SQLite: the write transaction (BEGIN IMMEDIATE) already holds
		// the whole database.
		if s.engine == enginePostgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, firstOrgLock); err != nil {
				return err
			}
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM orgs`).Scan(&n); err != nil || n > 0 {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)`, o.ID, o.Name, ms(o.CreatedAt))
		created = err == nil
		return err
	})
	if err != nil {
		return Org{}, false, fmt.Errorf("store: create first org: %w", err)
	}
	if !created {
		return Org{}, false, nil
	}
	return o, true, nil
}

// GetOrg returns an organisation by id.
func (s *Store) GetOrg(ctx context.Context, id string) (Org, error) {
	var o Org
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, created_at FROM orgs WHERE id = ?`, id).Scan(&o.ID, &o.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Org{}, fmt.Errorf("store: org: %w", ErrNotFound)
	}
	if err != nil {
		return Org{}, fmt.Errorf("store: get org: %w", err)
	}
	o.CreatedAt = fromMS(created)
	return o, nil
}

// ListOrgs returns every organisation, oldest first. It spans all orgs:
// for operators' tools (first start, offline token creation), never for an
// API answer.
func (s *Store) ListOrgs(ctx context.Context) ([]Org, error) {
	return queryAll(ctx, s.db, "list orgs", func(r scanner) (Org, error) {
		var o Org
		var created int64
		if err := r.Scan(&o.ID, &o.Name, &created); err != nil {
			return Org{}, err
		}
		o.CreatedAt = fromMS(created)
		return o, nil
	}, `SELECT id, name, created_at FROM orgs ORDER BY created_at, rowid`)
}

// CreateAPIToken makes a new token for orgID and returns it, once: only its
// SHA-256 is stored, so it cannot be shown again. The token looks like
// "tg_" followed by 52 lower-case base32 characters.
func (s *Store) CreateAPIToken(ctx context.Context, orgID, name string, role Role) (string, Token, error) {
	if !role.Valid() {
		return "", Token{}, fmt.Errorf("store: create API token: role %q is not admin or runner", role)
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return "", Token{}, errors.New("store: create API token: empty name")
	}
	secret := TokenPrefix + randomText(tokenRandomBytes)
	t := Token{ID: newID("tok"), OrgID: orgID, Name: name, Role: role, CreatedAt: s.now().Truncate(time.Millisecond)}
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_tokens (id, org_id, name, role, hash, created_at)
		SELECT ?, id, ?, ?, ?, ? FROM orgs WHERE id = ?`,
		t.ID, t.Name, string(t.Role), hashToken(secret), ms(t.CreatedAt), orgID)
	if err != nil {
		return "", Token{}, fmt.Errorf("store: create API token: %w", err)
	}
	if _, err := s.getToken(ctx, orgID, t.ID); err != nil {
		return "", Token{}, fmt.Errorf("store: create API token: org: %w", ErrNotFound)
	}
	return secret, t, nil
}

// Authenticate finds the principal a token acts as. An unknown, malformed
// or revoked token is ErrUnauthenticated; the error never contains the
// token.
func (s *Store) Authenticate(ctx context.Context, token string) (Principal, error) {
	if !strings.HasPrefix(token, TokenPrefix) || len(token) > 200 {
		return Principal{}, ErrUnauthenticated
	}
	var p Principal
	var role string
	var revoked sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT id, org_id, role, revoked_at FROM api_tokens WHERE hash = ?`,
		hashToken(token)).Scan(&p.TokenID, &p.OrgID, &role, &revoked)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && revoked.Valid) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("store: authenticate: %w", err)
	}
	p.Role = Role(role)
	return p, nil
}

// ListAPITokens lists an org's tokens (revoked ones too), oldest first.
func (s *Store) ListAPITokens(ctx context.Context, orgID string) ([]Token, error) {
	return queryAll(ctx, s.db, "list API tokens", scanToken, `SELECT id, org_id, name, role, created_at, revoked_at
		FROM api_tokens WHERE org_id = ? ORDER BY created_at, id`, orgID)
}

// RevokeAPIToken revokes one of orgID's tokens; it stops authenticating at
// once. Revoking a revoked token is not an error.
func (s *Store) RevokeAPIToken(ctx context.Context, orgID, tokenID string) error {
	return execOne(ctx, s.db, "revoke API token", "API token", `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?)
		WHERE id = ? AND org_id = ?`, ms(s.now()), tokenID, orgID)
}

func (s *Store) getToken(ctx context.Context, orgID, id string) (Token, error) {
	row := s.db.QueryRowContext(ctx, `SELECT id, org_id, name, role, created_at, revoked_at
		FROM api_tokens WHERE id = ? AND org_id = ?`, id, orgID)
	t, err := scanToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, ErrNotFound
	}
	return t, err
}

func scanToken(r scanner) (Token, error) {
	var t Token
	var role string
	var created int64
	var revoked sql.NullInt64
	if err := r.Scan(&t.ID, &t.OrgID, &t.Name, &role, &created, &revoked); err != nil {
		return Token{}, err
	}
	t.Role, t.CreatedAt, t.RevokedAt = Role(role), fromMS(created), fromNullMS(revoked)
	return t, nil
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}
