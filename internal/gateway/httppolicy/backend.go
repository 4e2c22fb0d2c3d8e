package httppolicy

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
	"github.com/tailgate-dev/tailgate/internal/gateway/spiffe"
)

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

var backendTLS = module("backendTLS", RouteSetting,
	func(p *config.RoutePolicies) *config.BackendTLS { return p.BackendTLS },
	func(t *config.BackendTLS, path string, c Compiler) Policy {
		if t.Spiffe != nil {
			ids, err := spiffe.ParseIDs(t.SubjectAltNames)
			if err != nil {
				c.Fail(t.Pos, path+".subjectAltNames", err)
				return nil
			}
			return backendTLSSetting{c.Spiffe().ClientTLS(ids, t.ALPN)}
		}
		cfg, err := BackendTLSConfig(t, c.Rel)
		if err != nil {
			c.Fail(t.Pos, path, err)
			return nil
		}
		return backendTLSSetting{cfg}
	})

type backendTLSSetting struct{ cfg *tls.Config }

func (b backendTLSSetting) configure(s *Set)                                            { s.BackendTLS = b.cfg }
func (b backendTLSSetting) Run(_ http.ResponseWriter, _ *http.Request, _ Exchange) bool { return true }

// BackendTLSConfig builds the client TLS config of backendTLS: roots
// (default the system's), a client certificate, the name to verify
// (default the backend's host), ALPN, and the insecure escapes.
func BackendTLSConfig(t *config.BackendTLS, rel func(string) string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.Hostname, NextProtos: t.ALPN}
	if t.Root != "" {
		pem, err := os.ReadFile(rel(t.Root))
		if err != nil {
			return nil, fmt.Errorf("root: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("root: no PEM certificate found")
		}
		cfg.RootCAs = pool
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(rel(t.Cert), rel(t.Key))
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	switch {
	case t.Insecure:
		cfg.InsecureSkipVerify = true
	case t.InsecureHost || len(t.SubjectAltNames) > 0:
		// Verify the chain ourselves; the name is either not checked
		// (insecureHost) or must be one of subjectAltNames.
		cfg.InsecureSkipVerify = true
		roots, sans := cfg.RootCAs, t.SubjectAltNames
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("backend sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(opts); err != nil {
				return err
			}
			if len(sans) == 0 {
				return nil
			}
			for _, san := range sans {
				if leaf.VerifyHostname(san) == nil || containsURI(leaf, san) {
					return nil
				}
			}
			return fmt.Errorf("backend certificate matches none of subjectAltNames %v", sans)
		}
	}
	return cfg, nil
}

func containsURI(c *x509.Certificate, s string) bool {
	for _, u := range c.URIs {
		if u.String() == s {
			return true
		}
	}
	return false
}

var backendAuth = module("backendAuth", RequestRewrite,
	func(p *config.RoutePolicies) *config.BackendAuth { return p.BackendAuth },
	compileBackendAuth)

func compileBackendAuth(a *config.BackendAuth, path string, c Compiler) Policy {
	switch {
	case a.Passthrough:
		return passthroughAuth{}
	case a.Key != nil:
		key, err := readFileOrInline(a.Key, c.Rel)
		if err != nil {
			c.Fail(a.Key.Pos, path+".key", err)
			return nil
		}
		return staticKeyAuth{key: strings.TrimSpace(key)}
	case a.JWTSign != nil:
		j := a.JWTSign
		pemText, err := readFileOrInline(j.SigningKey, c.Rel)
		if err != nil {
			c.Fail(j.SigningKey.Pos, path+".jwtSign.signingKey", err)
			return nil
		}
		key, err := parsePrivateKey(pemText)
		if err != nil {
			c.Fail(j.SigningKey.Pos, path+".jwtSign.signingKey", err)
			return nil
		}
		opts := (&jose.SignerOptions{}).WithType("JWT")
		if j.Kid != "" {
			opts = opts.WithHeader("kid", j.Kid)
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(j.Alg), Key: key}, opts)
		if err != nil {
			c.Fail(j.Pos, path+".jwtSign", fmt.Errorf("signing key does not fit alg %s: %w", j.Alg, err))
			return nil
		}
		return &jwtSignAuth{signer: signer, claims: j.Claims, ttl: j.TTL.D}
	case a.OAuthTokenExchange != nil:
		return compileTokenExchange(a.OAuthTokenExchange, path+".oauthTokenExchange", c)
	case a.CrossAppAccess != nil:
		return compileCrossAppAccess(a.CrossAppAccess, path+".crossAppAccess", c)
	}
	return nil
}

func readFileOrInline(f *config.FileOrInline, rel func(string) string) (string, error) {
	if f.File == "" {
		return f.Inline, nil
	}
	b, err := os.ReadFile(rel(f.File))
	return string(b), err
}

func parsePrivateKey(text string) (crypto.Signer, error) {
	block, _ := pem.Decode([]byte(strings.TrimSpace(text)))
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, errors.New("unsupported private key (want PKCS#8, EC or PKCS#1 PEM)")
}

// passthroughAuth sends the backend the bearer token the caller
// authenticated with (after jwtAuth or mcpAuthentication).
type passthroughAuth struct{}

func (passthroughAuth) Run(_ http.ResponseWriter, r *http.Request, x Exchange) bool {
	if tok := x.BearerToken(); tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return true
}

// staticKeyAuth sends a fixed key as a bearer token.
type staticKeyAuth struct{ key string }

func (k staticKeyAuth) Run(_ http.ResponseWriter, r *http.Request, _ Exchange) bool {
	r.Header.Set("Authorization", "Bearer "+k.key)
	return true
}

// jwtSignAuth signs a JWT per request: the configured claims, iat and
// exp = iat + ttl (default 5m).
type jwtSignAuth struct {
	signer jose.Signer
	claims map[string]any
	ttl    time.Duration
	now    func() time.Time
}

func (j *jwtSignAuth) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	now := time.Now()
	if j.now != nil {
		now = j.now()
	}
	std := jwt.Claims{IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(j.ttl))}
	tok, err := jwt.Signed(j.signer).Claims(j.claims).Claims(std).Serialize()
	if err != nil {
		Deny(w, x, "backendAuth", "jwt signing failed", http.StatusInternalServerError, "internal error")
		return false
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	return true
}
