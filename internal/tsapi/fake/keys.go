package fake

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"slices"
	"strings"
	"time"
)

// Key types, as the API's "keyType" names them.
const (
	KeyTypeAPI    = "api"    // an API access token (a user's, or one minted by an OAuth client)
	KeyTypeClient = "client" // an OAuth client
	KeyTypeAuth   = "auth"   // an auth key that joins devices
)

// Token prefixes: real credentials are tskey-<kind>-<id>-<secret>.
const (
	prefixAPI    = "tskey-api-"
	prefixClient = "tskey-client-"
	prefixAuth   = "tskey-auth-"
)

// allScopes are the OAuth scopes the fake knows. A ":read" scope allows
// only reads; the bare scope allows reads and writes.
var allScopes = []string{
	"all", "all:read",
	"auth_keys", "auth_keys:read",
	"devices:core", "devices:core:read",
	"devices:routes", "devices:routes:read",
	"policy_file", "policy_file:read",
	"feature_settings", "feature_settings:read",
	"oauth_keys", "oauth_keys:read",
	"dns", "dns:read",
}

// scopesNeedingTags must come with at least one tag when an OAuth client
// is created, as in the admin console: keys and devices it creates are tagged.
var scopesNeedingTags = []string{"auth_keys", "devices:core"}

// KeyInfo describes a credential the fake has issued, without its secret.
// The lead uses it to check that nothing was left behind.
type KeyInfo struct {
	ID          string
	Type        string // KeyTypeAPI, KeyTypeClient, KeyTypeFederated or KeyTypeAuth
	Description string
	Scopes      []string // API tokens and OAuth clients; nil means all
	Tags        []string // OAuth clients and auth keys
	ClientID    string   // for API tokens minted by an OAuth client or federated identity
	Ephemeral   bool     // auth keys
	Reusable    bool     // auth keys
	Preauth     bool     // auth keys
	Created     time.Time
	Expires     time.Time // zero for OAuth clients, which do not expire
	// Revoked is true once the key was deleted, and for a token whose
	// OAuth client was deleted (such a token no longer works).
	Revoked bool
	// Used is true for a single-use auth key that a device redeemed.
	Used bool
	// Issuer, Subject, Audience and CustomClaimRules are what a federated
	// identity trusts: ID tokens from Issuer whose sub, aud and claims
	// match.
	Issuer, Subject, Audience string
	CustomClaimRules          map[string]string
}

// key is a credential. Only the SHA-256 of its secret is kept, and secrets
// are compared in constant time.
type key struct {
	KeyInfo
	secretHash [32]byte
	revokedAt  time.Time
}

func newID() string {
	return "k" + rand.Text()[:10] + "CNTRL"
}

// newSecret returns a credential "<prefix><id>-<random>".
func newSecret(prefix, id string) string {
	return prefix + id + "-" + rand.Text()
}

func hashSecret(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// idFromSecret extracts the id from "<prefix><id>-<random>".
func idFromSecret(prefix, secret string) (string, bool) {
	rest, ok := strings.CutPrefix(secret, prefix)
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, "-")
	return id, ok && id != ""
}

func (k *key) secretMatches(s string) bool {
	h := hashSecret(s)
	return subtle.ConstantTimeCompare(h[:], k.secretHash[:]) == 1
}

// hasScope reports whether a credential with scopes may use an endpoint
// needing want (e.g. "policy_file" or "policy_file:read").
func hasScope(scopes []string, want string) bool {
	if scopes == nil {
		return true // full-access API token
	}
	base, isRead := strings.CutSuffix(want, ":read")
	for _, s := range scopes {
		switch {
		case s == "all" || s == base:
			return true
		case isRead && (s == "all:read" || s == want):
			return true
		}
	}
	return false
}

func knownScope(s string) bool { return slices.Contains(allScopes, s) }
