package httppolicy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestCachedSignatureStillChecksExpiry(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k", Algorithm: "ES256"}}})
	jwks, err := NewJWKSInline(string(set))
	if err != nil {
		t.Fatal(err)
	}
	j, err := NewJWTAuth(JWTStrict, []JWTProviderSpec{{Issuer: "iss", JWKS: jwks}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	j.Now = func() time.Time { return now }
	sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k"))
	tok, _ := jwt.Signed(sig).Claims(jwt.Claims{Issuer: "iss", Subject: "a", Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute))}).Serialize()
	req, _ := http.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)

	if out := j.Check(context.Background(), req); out.Reject || out.Claims["sub"] != "a" {
		t.Fatalf("first use: %+v", out)
	}
	if out := j.Check(context.Background(), req); out.Reject {
		t.Fatalf("cached use: %+v", out)
	}
	now = now.Add(time.Hour)
	if out := j.Check(context.Background(), req); !out.Reject || out.Reason != ReasonExpired {
		t.Fatalf("after expiry, a cached token must be refused: %+v", out)
	}
}
