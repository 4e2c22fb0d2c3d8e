package issuer

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

func newIssuer(t *testing.T) (*Issuer, *time.Time) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kr, err := vault.LoadOrCreateKeyFile(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	return &Issuer{URL: "https://tailgate.example.com", Keys: st, Vault: kr, Prepublish: time.Hour, Overlap: time.Hour,
		Now: func() time.Time { return now }}, &now
}

// kidOf is the key id a token was signed with, after checking it
// verifies with set.
func kidOf(t *testing.T, tok string, set jose.JSONWebKeySet) string {
	t.Helper()
	p, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	kid := p.Headers[0].KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("token key %s is not published", kid)
	}
	var c jwt.Claims
	if err := p.Claims(keys[0].Key, &c); err != nil {
		t.Fatal(err)
	}
	return kid
}

// TestRotationPublishesBeforeSigningAndKeepsTheOldKeyForTheOverlap walks a
// rotation on a clock: the new key is published at once but signs only
// after Prepublish; the old key stays published Overlap longer, then goes.
func TestRotationPublishesBeforeSigningAndKeepsTheOldKeyForTheOverlap(t *testing.T) {
	iss, now := newIssuer(t)
	ctx := context.Background()
	sign := func() string {
		tok, err := iss.Sign(ctx, "tailgate:org:env", "aud", 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		set, err := iss.KeySet(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return kidOf(t, tok, set)
	}
	first := sign()
	if rotated, _ := iss.RotateIfDue(ctx, 24*time.Hour); rotated {
		t.Fatal("rotated a fresh key")
	}
	*now = now.Add(25 * time.Hour)
	if rotated, err := iss.RotateIfDue(ctx, 24*time.Hour); !rotated || err != nil {
		t.Fatalf("rotate when due: %v %v", rotated, err)
	}
	set, _ := iss.KeySet(ctx)
	if len(set.Keys) != 2 {
		t.Fatalf("after rotation %d keys published, want 2", len(set.Keys))
	}
	if k := sign(); k != first {
		t.Error("the new key signs before its prepublish period ended")
	}
	*now = now.Add(61 * time.Minute)
	second := sign()
	if second == first {
		t.Error("the new key does not sign after its prepublish period")
	}
	if set, _ := iss.KeySet(ctx); len(set.Key(first)) != 1 {
		t.Error("the old key left the key set before the overlap ended")
	}
	*now = now.Add(time.Hour)
	if set, _ := iss.KeySet(ctx); len(set.Key(first)) != 0 || len(set.Keys) != 1 {
		t.Errorf("after the overlap the key set holds %d keys (old one there: %v)", len(set.Keys), len(set.Key(first)) == 1)
	}
	if _, err := iss.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	keys, _ := iss.Keys.SigningKeys(ctx)
	for _, k := range keys {
		if k.KID == first {
			t.Error("a retired key was not deleted at the next rotation")
		}
	}
}

func TestTokensCarryIssuerSubjectAudienceAndLifetime(t *testing.T) {
	iss, now := newIssuer(t)
	tok, err := iss.Sign(context.Background(), "tailgate:o:e", "api.tailscale.com/k1", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := iss.KeySet(context.Background())
	p, _ := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	var c jwt.Claims
	if err := p.Claims(set.Keys[0].Key, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: iss.URL, Subject: "tailgate:o:e", AnyAudience: jwt.Audience{"api.tailscale.com/k1"}, Time: *now}, 0); err != nil {
		t.Error(err)
	}
	if c.Expiry.Time().Sub(*now) != 5*time.Minute || c.ID == "" {
		t.Errorf("exp %v, jti %q", c.Expiry.Time(), c.ID)
	}
}

func TestCheckURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://tailgate.example.com":         true,
		"https://tailgate.example.com/tg":      true,
		"http://127.0.0.1:8080":                true,
		"http://tailgate.example.com":          false,
		"https://tailgate.example.com/":        false,
		"https://tailgate.example.com/?a=b":    false,
		"https://user:pw@tailgate.example.com": false,
		"tailgate.example.com":                 false,
	} {
		if err := CheckURL(u); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v", u, err)
		}
	}
}
