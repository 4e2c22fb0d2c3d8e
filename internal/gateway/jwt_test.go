package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// idp is a test identity provider: RSA keys, a JWKS endpoint, tokens.
type idp struct {
	t       testing.TB
	mu      sync.Mutex
	keys    map[string]*rsa.PrivateKey
	served  []string // kids published in the JWKS
	fetches atomic.Int32
	srv     *httptest.Server
}

func newIDP(t testing.TB, kids ...string) *idp {
	p := &idp{t: t, keys: map[string]*rsa.PrivateKey{}}
	for _, k := range append(kids, "rotated") {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		p.keys[k] = key
	}
	p.served = kids
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		w.Write(p.jwks())
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) jwks() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var set jose.JSONWebKeySet
	for _, kid := range p.served {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &p.keys[kid].PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
	}
	b, _ := json.Marshal(set)
	return b
}

func (p *idp) publish(kids ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.served = kids
}

type claims struct {
	jwt.Claims
	Groups []string `json:"groups,omitempty"`
}

func (p *idp) token(kid string, c claims) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.keys[kid]}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		p.t.Fatal(err)
	}
	s, err := jwt.Signed(sig).Claims(c).Serialize()
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

func goodClaims() claims {
	now := time.Now()
	return claims{Claims: jwt.Claims{
		Issuer: "https://idp.example.com", Subject: "alice", Audience: jwt.Audience{"gateway"},
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), IssuedAt: jwt.NewNumericDate(now),
	}, Groups: []string{"eng"}}
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hs256WithPublicKey is the algorithm-confusion attack: an HMAC token
// whose secret is the RSA public key the gateway trusts.
func (p *idp) hs256WithPublicKey(kid string) string {
	der, _ := x509.MarshalPKIXPublicKey(&p.keys[kid].PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pemKey}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		p.t.Fatal(err)
	}
	s, _ := jwt.Signed(sig).Claims(goodClaims()).Serialize()
	return s
}

func jwtConfig(port int, backend, mode, jwks string) string {
	return simpleConfig(port, backend, fmt.Sprintf(`
jwtAuth:
  mode: %s
  issuer: https://idp.example.com
  audiences: [gateway]
  jwks: %s
authorization:
  rules:
  - 'jwt.sub == "alice" || !has(jwt.sub)'
  - deny: '"banned" in default(jwt.groups, [])'`, mode, jwks), "")
}

func TestJWTStrictRejectsEveryBadTokenWithItsReason(t *testing.T) {
	be := echoBackend(t)
	p := newIDP(t, "k1")
	port := freePort(t)
	g := startGateway(t, jwtConfig(port, hostOf(be), "strict", fmt.Sprintf("{url: %q}", p.srv.URL)), port)

	expired := goodClaims()
	expired.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	future := goodClaims()
	future.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour))
	wrongIss := goodClaims()
	wrongIss.Issuer = "https://evil.example.com"
	wrongAud := goodClaims()
	wrongAud.Audience = jwt.Audience{"someone-else"}
	noExp := goodClaims()
	noExp.Expiry = nil
	none := b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64(goodClaims()) + "."

	for _, tc := range []struct {
		name, auth, reason string
	}{
		{"no token", "", "token missing"},
		{"alg none", "Bearer " + none, "algorithm not allowed: none"},
		{"HS256 with the RSA public key", "Bearer " + p.hs256WithPublicKey("k1"), "algorithm not allowed: HS256"},
		{"expired", "Bearer " + p.token("k1", expired), "token expired"},
		{"not yet valid", "Bearer " + p.token("k1", future), "token not yet valid"},
		{"wrong issuer", "Bearer " + p.token("k1", wrongIss), "wrong issuer"},
		{"wrong audience", "Bearer " + p.token("k1", wrongAud), "wrong audience"},
		{"no exp", "Bearer " + p.token("k1", noExp), "required claim missing: exp"},
		{"signed by another key", "Bearer " + strings.Join(append(strings.Split(p.token("k1", goodClaims()), ".")[:2], strings.Split(p.token("rotated", goodClaims()), ".")[2]), "."), "invalid signature"},
		{"garbage", "Bearer not.a.jwt", "malformed token"},
		{"garbage, one part", "Bearer xyz", "malformed token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := fmt.Sprintf("/case-%d", time.Now().UnixNano())
			code, _, hdr := get(t, g.url(marker), "Authorization", tc.auth)
			if code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", code)
			}
			if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", hdr.Get("WWW-Authenticate"))
			}
			log := g.access.WaitFor(t, "path="+marker)
			line := lineWith(log, "path="+marker)
			if !strings.Contains(line, "policy=jwtAuth") || !strings.Contains(line, fmt.Sprintf("reason=%q", tc.reason)) {
				t.Errorf("log line lacks policy=jwtAuth reason=%q:\n%s", tc.reason, line)
			}
		})
	}

	code, body, _ := get(t, g.url("/ok"), "Authorization", "Bearer "+p.token("k1", goodClaims()))
	if code != 200 {
		t.Fatalf("valid token: %d %s", code, body)
	}
	if line := lineWith(g.access.WaitFor(t, "path=/ok"), "path=/ok"); !strings.Contains(line, "jwt.sub=alice") {
		t.Errorf("access log lacks the subject: %s", line)
	}
	banned := goodClaims()
	banned.Groups = []string{"banned"}
	if code, _, _ := get(t, g.url("/"), "Authorization", "Bearer "+p.token("k1", banned)); code != 403 {
		t.Errorf("claims reach authorization rules: banned group got %d, want 403", code)
	}
}

func lineWith(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

func TestJWTUnknownKidIsRefetchedAfterRotation(t *testing.T) {
	old := jwksRefetchInterval
	jwksRefetchInterval = 0
	t.Cleanup(func() { jwksRefetchInterval = old })
	be := echoBackend(t)
	p := newIDP(t, "k1")
	port := freePort(t)
	g := startGateway(t, jwtConfig(port, hostOf(be), "strict", fmt.Sprintf("{url: %q}", p.srv.URL)), port)

	if code, _, _ := get(t, g.url("/"), "Authorization", "Bearer "+p.token("k1", goodClaims())); code != 200 {
		t.Fatalf("k1 before rotation: %d", code)
	}
	tok := p.token("rotated", goodClaims())
	if code, _, _ := get(t, g.url("/before"), "Authorization", "Bearer "+tok); code != 401 {
		t.Fatalf("unpublished kid: %d, want 401", code)
	}
	if line := lineWith(g.access.WaitFor(t, "path=/before"), "path=/before"); !strings.Contains(line, `reason="unknown key id"`) {
		t.Errorf("log: %s", line)
	}
	p.publish("k1", "rotated")
	if code, _, _ := get(t, g.url("/after"), "Authorization", "Bearer "+tok); code != 200 {
		t.Fatalf("rotated kid after the IdP published it: %d, want 200", code)
	}
}

func TestJWKSRefetchIsRateLimited(t *testing.T) {
	be := echoBackend(t)
	p := newIDP(t, "k1")
	port := freePort(t)
	g := startGateway(t, jwtConfig(port, hostOf(be), "strict", fmt.Sprintf("{url: %q}", p.srv.URL)), port)
	for i := 0; i < 20; i++ {
		get(t, g.url("/"), "Authorization", "Bearer "+p.token("rotated", goodClaims()))
	}
	// One initial fetch plus at most one refetch in the interval.
	if n := p.fetches.Load(); n > 2 {
		t.Fatalf("20 unknown-kid tokens caused %d JWKS fetches; want at most 2", n)
	}
}

func TestJWTOptionalAndPermissiveModes(t *testing.T) {
	be := echoBackend(t)
	p := newIDP(t, "k1")
	jwksFile := t.TempDir() + "/jwks.json"
	writeFile(t, jwksFile, p.jwks())
	expired := goodClaims()
	expired.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	good := "Bearer " + p.token("k1", goodClaims())
	bad := "Bearer " + p.token("k1", expired)
	for _, tc := range []struct {
		mode               string
		none, valid, inval int
	}{
		{"strict", 401, 200, 401},
		{"optional", 200, 200, 401},
		{"permissive", 200, 200, 200},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			port := freePort(t)
			g := startGateway(t, jwtConfig(port, hostOf(be), tc.mode, fmt.Sprintf("{file: %q}", jwksFile)), port)
			for _, c := range []struct {
				auth string
				want int
			}{{"", tc.none}, {good, tc.valid}, {bad, tc.inval}} {
				if code, _, _ := get(t, g.url("/"), "Authorization", c.auth); code != c.want {
					t.Errorf("mode %s, auth %.20q: %d, want %d", tc.mode, c.auth, code, c.want)
				}
			}
		})
	}
}
