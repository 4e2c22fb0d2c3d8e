// Package issuer makes tailgate an OIDC issuer, so that an environment
// on Tailscale needs no stored secret (workload identity federation).
//
// # Overview
//
// Connect creates a federated identity in the customer's tailnet that
// trusts ID tokens from tailgate's public URL (the issuer) with subject
// tailgate:<org id>:<env>. Verify and every run then sign a five-minute ID
// token for that subject ([Issuer.Sign]) and exchange it with Tailscale for
// an API token that mints one auth key. Tailscale checks the token against
// the keys tailgate publishes, which it finds by OIDC discovery: the
// [Issuer.Handler] serves <public URL>/.well-known/openid-configuration
// and the key set (JWKS) it names, <public URL>/.well-known/jwks.json.
//
// Signing keys are RSA-2048 (RS256, the algorithm every OIDC relying party
// supports), made by tailgate, sealed by package vault and kept in the
// database (package store), so every replica of tailgate serve signs with
// and publishes the same keys. A key's id is its RFC 7638 thumbprint.
//
// # Rotation
//
// Keys rotate automatically ([Issuer.RotateIfDue], every
// [DefaultRotation] under tailgate serve) with overlap on both sides:
//
//   - a new key is published [Issuer.Prepublish] before it signs, so a
//     relying party that cached the key set already knows it;
//   - the previous key stays published [Issuer.Overlap] after its
//     successor starts signing, so a token it signed still verifies;
//   - retired keys are deleted once out of the key set.
//
// The first key is made on first use and signs at once.
//
// # Usage
//
//	iss := &issuer.Issuer{URL: "https://tailgate.example.com", Keys: st, Vault: kr, Prepublish: issuer.DefaultPrepublish}
//	tok, err := iss.Sign(ctx, "tailgate:org_1:staging", audience, 5*time.Minute)
//	mux.Handle("/.well-known/", iss.Handler())
package issuer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

// Defaults for tailgate serve.
const (
	// DefaultRotation is how often tailgate serve rotates the signing key.
	DefaultRotation = 30 * 24 * time.Hour
	// DefaultPrepublish is how long a new key is published before it signs.
	DefaultPrepublish = time.Hour
	// DefaultOverlap is how long a replaced key stays published.
	DefaultOverlap = time.Hour
)

// Paths under the issuer URL.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/.well-known/jwks.json"
)

// alg is the signing algorithm.
const alg = jose.RS256

// KeyStore keeps the signing keys; *store.Store implements it.
type KeyStore interface {
	AddSigningKey(ctx context.Context, k store.SigningKey) error
	SigningKeys(ctx context.Context) ([]store.SigningKey, error)
	RetireSigningKeys(ctx context.Context, keep string, at time.Time) error
	DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) error
}

// Issuer signs ID tokens and publishes its keys. Set its fields before
// first use; it is safe for concurrent use.
type Issuer struct {
	// URL is the issuer: tailgate's public URL, as Tailscale reaches it
	// (https; http only on loopback, for tests). Tokens carry it as iss.
	URL string
	// Keys keeps the signing keys; Vault seals them.
	Keys  KeyStore
	Vault *vault.Keyring
	// Prepublish is how long a key made by Rotate is published before it
	// signs; zero signs at once (relying parties that cached the old key
	// set then fetch it again for the unknown key id).
	Prepublish time.Duration
	// Overlap is how long a replaced key stays published after its
	// successor starts signing; DefaultOverlap when zero. It must exceed
	// the longest token lifetime.
	Overlap time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu     sync.Mutex
	parsed map[string]*rsa.PrivateKey // kid → opened key
}

// CheckURL reports whether u can be an issuer URL: https (http only for
// a loopback host), a host, no query, fragment or credentials, and no
// trailing slash (iss must match byte for byte).
func CheckURL(u string) error {
	p, err := url.Parse(u)
	switch {
	case err != nil || p.Host == "":
		return fmt.Errorf("%q is not an absolute URL", u)
	case p.User != nil || p.RawQuery != "" || p.Fragment != "":
		return fmt.Errorf("%q must not carry credentials, a query or a fragment", u)
	case strings.HasSuffix(u, "/"):
		return fmt.Errorf("%q must not end in a slash (it is the issuer, compared byte for byte)", u)
	case p.Scheme == "https":
		return nil
	case p.Scheme == "http":
		if ip := net.ParseIP(p.Hostname()); ip != nil && ip.IsLoopback() || p.Hostname() == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("%q must be an https URL (Tailscale fetches the issuer's keys from it)", u)
}

// Path is the URL path under which the issuer's documents are served
// (the public URL's own path, "" at the root).
func (i *Issuer) Path() string {
	p, _ := url.Parse(i.URL)
	if p == nil {
		return ""
	}
	return strings.TrimRight(p.Path, "/")
}

// Sign returns an ID token for subject and audience that expires after
// ttl, signed with the current key (made on first use).
func (i *Issuer) Sign(ctx context.Context, subject, audience string, ttl time.Duration) (string, error) {
	k, priv, err := i.signingKey(ctx)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), k.KID))
	if err != nil {
		return "", fmt.Errorf("issuer: signer: %w", err)
	}
	now := i.now()
	jti := make([]byte, 16)
	rand.Read(jti)
	claims := jwt.Claims{
		Issuer: i.URL, Subject: subject, Audience: jwt.Audience{audience},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		Expiry: jwt.NewNumericDate(now.Add(ttl)), ID: base64.RawURLEncoding.EncodeToString(jti),
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("issuer: sign: %w", err)
	}
	return tok, nil
}

// signingKey is the newest key whose NotBefore has passed and which is
// not retired, made if there is none.
func (i *Issuer) signingKey(ctx context.Context) (store.SigningKey, *rsa.PrivateKey, error) {
	keys, err := i.Keys.SigningKeys(ctx)
	if err != nil {
		return store.SigningKey{}, nil, err
	}
	now := i.now()
	var cur *store.SigningKey
	for n := range keys {
		k := &keys[n]
		if !k.NotBefore.After(now) && (k.NotAfter.IsZero() || k.NotAfter.After(now)) {
			cur = k // ordered by NotBefore: the last one wins
		}
	}
	if cur == nil {
		k, priv, err := i.newKey(ctx, now)
		return k, priv, err
	}
	priv, err := i.open(*cur)
	return *cur, priv, err
}

// Rotate makes a new key that signs after Prepublish, and retires every
// other key Overlap after that. It also deletes keys retired earlier. It
// returns the new key's id.
func (i *Issuer) Rotate(ctx context.Context) (string, error) {
	now := i.now()
	k, _, err := i.newKey(ctx, now.Add(i.Prepublish))
	if err != nil {
		return "", err
	}
	if err := i.Keys.RetireSigningKeys(ctx, k.KID, k.NotBefore.Add(i.overlap())); err != nil {
		return "", err
	}
	if err := i.Keys.DeleteSigningKeysRetiredBefore(ctx, now); err != nil {
		return "", err
	}
	return k.KID, nil
}

// RotateIfDue rotates when the newest key was made more than every ago,
// and reports whether it did. Several replicas may rotate at about the
// same time; the extra keys are harmless (the newest signs).
func (i *Issuer) RotateIfDue(ctx context.Context, every time.Duration) (bool, error) {
	keys, err := i.Keys.SigningKeys(ctx)
	if err != nil {
		return false, err
	}
	var newest time.Time
	for _, k := range keys {
		if k.CreatedAt.After(newest) {
			newest = k.CreatedAt
		}
	}
	if newest.IsZero() || i.now().Sub(newest) < every {
		return false, nil
	}
	_, err = i.Rotate(ctx)
	return err == nil, err
}

// KeySet is the published keys: every key not yet retired, including
// one that does not sign yet.
func (i *Issuer) KeySet(ctx context.Context) (jose.JSONWebKeySet, error) {
	keys, err := i.Keys.SigningKeys(ctx)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	if len(keys) == 0 {
		if _, _, err := i.signingKey(ctx); err != nil {
			return jose.JSONWebKeySet{}, err
		}
		if keys, err = i.Keys.SigningKeys(ctx); err != nil {
			return jose.JSONWebKeySet{}, err
		}
	}
	now := i.now()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range keys {
		if !k.NotAfter.IsZero() && !k.NotAfter.After(now) {
			continue
		}
		priv, err := i.open(k)
		if err != nil {
			return jose.JSONWebKeySet{}, err
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &priv.PublicKey, KeyID: k.KID, Algorithm: k.Alg, Use: "sig"})
	}
	return set, nil
}

// Handler serves the discovery document and the key set at Path() +
// DiscoveryPath and Path() + JWKSPath; every other path is 404. Both are
// public and cacheable for five minutes.
func (i *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+i.Path()+DiscoveryPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                i.URL,
			"jwks_uri":                              i.URL + JWKSPath,
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{string(alg)},
			"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti"},
		})
	})
	mux.HandleFunc("GET "+i.Path()+JWKSPath, func(w http.ResponseWriter, r *http.Request) {
		set, err := i.KeySet(r.Context())
		if err != nil {
			http.Error(w, `{"error":"signing keys unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, set)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(b)
}

// newKey makes, seals and stores a key that signs from notBefore.
func (i *Issuer) newKey(ctx context.Context, notBefore time.Time) (store.SigningKey, *rsa.PrivateKey, error) {
	if i.Vault == nil || i.Keys == nil {
		return store.SigningKey{}, nil, errors.New("issuer: no key store or vault")
	}
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return store.SigningKey{}, nil, fmt.Errorf("issuer: generate key: %w", err)
	}
	tp, err := (&jose.JSONWebKey{Key: &priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		return store.SigningKey{}, nil, fmt.Errorf("issuer: key id: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return store.SigningKey{}, nil, fmt.Errorf("issuer: encode key: %w", err)
	}
	sealed, err := i.Vault.Seal(der, kid, vault.PurposeSigningKey)
	if err != nil {
		return store.SigningKey{}, nil, fmt.Errorf("issuer: seal key: %w", err)
	}
	now := i.now()
	k := store.SigningKey{KID: kid, Alg: string(alg), Sealed: sealed, CreatedAt: now, NotBefore: notBefore}
	if err := i.Keys.AddSigningKey(ctx, k); err != nil {
		return store.SigningKey{}, nil, err
	}
	i.remember(kid, priv)
	return k, priv, nil
}

// open unseals a stored key, once per process.
func (i *Issuer) open(k store.SigningKey) (*rsa.PrivateKey, error) {
	i.mu.Lock()
	priv := i.parsed[k.KID]
	i.mu.Unlock()
	if priv != nil {
		return priv, nil
	}
	der, err := i.Vault.Open(k.Sealed, k.KID, vault.PurposeSigningKey)
	if err != nil {
		return nil, fmt.Errorf("issuer: signing key %s does not open with the configured vault key: %w", k.KID, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("issuer: signing key %s: %w", k.KID, err)
	}
	priv, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("issuer: signing key %s is not an RSA key", k.KID)
	}
	i.remember(k.KID, priv)
	return priv, nil
}

func (i *Issuer) remember(kid string, priv *rsa.PrivateKey) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.parsed == nil {
		i.parsed = map[string]*rsa.PrivateKey{}
	}
	i.parsed[kid] = priv
}

func (i *Issuer) overlap() time.Duration {
	if i.Overlap > 0 {
		return i.Overlap
	}
	return DefaultOverlap
}

func (i *Issuer) now() time.Time {
	if i.Now != nil {
		return i.Now()
	}
	return time.Now()
}

// IssuerURL is URL: the iss of its tokens.
func (i *Issuer) IssuerURL() string { return i.URL }
