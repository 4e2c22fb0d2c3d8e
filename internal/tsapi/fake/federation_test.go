package fake_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tailgate-dev/tailgate/internal/tsapi"
	"github.com/tailgate-dev/tailgate/internal/tsapi/fake"
)

// TestTokenExchangeChecksTheIssuerByDiscovery: the stand-in finds the
// issuer's keys by OIDC discovery and says which check a token failed.
func TestTokenExchangeChecksTheIssuerByDiscovery(t *testing.T) {
	ctx := context.Background()
	f := fake.New(fake.Options{})
	f.SetPolicy([]byte(`{"tagOwners": {"tag:ci": ["autogroup:admin"]}}`))
	api := httptest.NewServer(f)
	defer api.Close()

	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	var down atomic.Bool
	var iss *httptest.Server
	iss = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.NotFound(w, r)
			return
		}
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": iss.URL, "jwks_uri": iss.URL + "/keys"})
		case "/keys":
			json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
		}
	}))
	defer iss.Close()

	admin := tsapi.NewWithAPIToken(api.URL, f.NewAPIToken(fake.TokenOptions{}))
	fi, err := admin.CreateFederatedIdentity(ctx, tsapi.FederatedIdentityRequest{
		Scopes: []string{"auth_keys"}, Tags: []string{"tag:ci"}, Issuer: iss.URL, Subject: "repo:acme/*",
	})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(kid, issuer, sub string) string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid))
		tok, _ := jwt.Signed(s).Claims(jwt.Claims{Issuer: issuer, Subject: sub, Audience: jwt.Audience{fi.Audience},
			Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}).Serialize()
		return tok
	}
	mint := func(tok string) error {
		c := tsapi.NewWithFederation(api.URL, fi.ID, func(context.Context) (string, error) { return tok, nil })
		_, err := c.CreateAuthKey(ctx, tsapi.AuthKeyRequest{Ephemeral: true, Tags: []string{"tag:ci"}, Expiry: time.Minute})
		return err
	}
	if err := mint(sign("k1", iss.URL, "repo:acme/web")); err != nil {
		t.Fatalf("a good token (subject matched by a wildcard): %v", err)
	}
	for _, c := range []struct {
		name, tok, want string
	}{
		{"other issuer", sign("k1", "https://evil.example", "repo:acme/web"), "is not the federated identity's issuer"},
		{"unknown key", sign("k2", iss.URL, "repo:acme/web"), `key id "k2", which the issuer's JWKS does not publish`},
		{"subject outside the wildcard", sign("k1", iss.URL, "repo:other/web"), "does not match the federated identity's subject"},
	} {
		if err := mint(c.tok); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %q", c.name, err, c.want)
		}
	}
	down.Store(true)
	if err := mint(sign("k3", iss.URL, "repo:acme/web")); err == nil || !strings.Contains(err.Error(), "cannot fetch the issuer's keys by OIDC discovery") {
		t.Errorf("issuer down: %v", err)
	}
}
