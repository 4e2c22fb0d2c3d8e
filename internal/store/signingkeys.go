package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tailgate-dev/tailgate/internal/vault"
)

// SigningKey is one of tailgate's OIDC signing keys (package issuer). The
// private key arrives sealed by package vault; the store never sees it in
// the clear. Keys belong to the server, not to an org.
type SigningKey struct {
	// KID is the key id, the "kid" of JWKS entries and token headers.
	KID string
	// Alg is the JWS algorithm, e.g. "RS256".
	Alg string
	// Sealed is the private key (PKCS #8), sealed for KID.
	Sealed vault.Sealed
	// CreatedAt is when the key was made and first published.
	CreatedAt time.Time
	// NotBefore is when the key starts signing.
	NotBefore time.Time
	// NotAfter is when the key leaves the JWKS; zero: not retired.
	NotAfter time.Time
}

// AddSigningKey stores a new signing key.
func (s *Store) AddSigningKey(ctx context.Context, k SigningKey) error {
	if k.KID == "" || k.Alg == "" || k.Sealed.KeyID == "" || len(k.Sealed.Ciphertext) == 0 {
		return errors.New("store: add signing key: kid, alg and sealed key are required")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO signing_keys (kid, alg, secret_key_id, secret_nonce, secret_ciphertext, created_at, not_before, not_after)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, k.KID, k.Alg, k.Sealed.KeyID, k.Sealed.Nonce, k.Sealed.Ciphertext,
		ms(k.CreatedAt), ms(k.NotBefore), nullMS(k.NotAfter))
	if err != nil {
		return fmt.Errorf("store: add signing key: %w", err)
	}
	return nil
}

// SigningKeys lists every stored signing key, oldest NotBefore first.
func (s *Store) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	return queryAll(ctx, s.db, "signing keys", func(r scanner) (SigningKey, error) {
		var k SigningKey
		var created, nb int64
		var na sql.NullInt64
		if err := r.Scan(&k.KID, &k.Alg, &k.Sealed.KeyID, &k.Sealed.Nonce, &k.Sealed.Ciphertext, &created, &nb, &na); err != nil {
			return SigningKey{}, err
		}
		k.CreatedAt, k.NotBefore, k.NotAfter = fromMS(created), fromMS(nb), fromNullMS(na)
		return k, nil
	}, `SELECT kid, alg, secret_key_id, secret_nonce, secret_ciphertext, created_at, not_before, not_after
		FROM signing_keys ORDER BY not_before, created_at, kid`)
}

// RetireSigningKeys sets NotAfter to at for every key not yet retired
// except keep.
func (s *Store) RetireSigningKeys(ctx context.Context, keep string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE signing_keys SET not_after = ? WHERE not_after IS NULL AND kid <> ?`, ms(at), keep)
	if err != nil {
		return fmt.Errorf("store: retire signing keys: %w", err)
	}
	return nil
}

// DeleteSigningKeysRetiredBefore forgets keys whose NotAfter is before t:
// nothing can verify with them any more.
func (s *Store) DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM signing_keys WHERE not_after IS NOT NULL AND not_after < ?`, ms(t))
	if err != nil {
		return fmt.Errorf("store: delete signing keys: %w", err)
	}
	return nil
}

func nullMS(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: ms(t), Valid: true}
}
