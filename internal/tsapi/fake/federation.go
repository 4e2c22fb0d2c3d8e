package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Workload identity federation, as Tailscale offers it: a federated
// identity is a trust credential with no secret (POST /tailnet/-/keys with
// "keyType":"federated": issuer, subject, audience, custom claim rules,
// scopes, tags), and POST /api/v2/oauth/token-exchange (form client_id,
// jwt) trades an ID token from that issuer for a 1-hour API token with the
// identity's scopes and tags. The token is checked the way an OIDC relying
// party does: the issuer's keys are found by OIDC discovery
// (<iss>/.well-known/openid-configuration → jwks_uri), fetched again when a
// token names a key id the cached set lacks (the issuer rotated), and the
// signature, iss, aud, sub, exp, nbf and the custom claims must all match.
// Each refusal says which check failed.
//
// Divergences, on purpose: an http:// issuer is accepted when its host is
// a loopback address (tests run the issuer on 127.0.0.1); the audience
// the fake generates when none is given is "api.tailscale.com/<id>" (the
// real format is not documented).

// KeyTypeFederated is a federated identity (workload identity federation).
const KeyTypeFederated = "federated"

// idTokenLeeway is the clock skew allowed for nbf and iat (not exp).
const idTokenLeeway = time.Minute

// issuerCache keeps each issuer's JWKS, fetched by OIDC discovery.
type issuerCache struct {
	mu      sync.Mutex
	sets    map[string]*jose.JSONWebKeySet
	fetches map[string]int
}

func (s *Server) createFederatedIdentity(w http.ResponseWriter, c caller, req *createKeyRequest) {
	if msg := checkIssuer(req.Issuer); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	if req.Subject == "" {
		writeError(w, http.StatusBadRequest, "a federated identity needs a subject")
		return
	}
	info := KeyInfo{
		Type:             KeyTypeFederated,
		Issuer:           req.Issuer,
		Subject:          req.Subject,
		Audience:         req.Audience,
		CustomClaimRules: req.CustomClaimRules,
	}
	s.addTrustCredential(w, c, req, "a federated identity", info, func(_ string, k *key) {
		if k.Audience == "" {
			k.Audience = "api.tailscale.com/" + k.ID // needs the new key's ID
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id":               k.ID,
			"keyType":          KeyTypeFederated,
			"description":      k.Description,
			"created":          k.Created.UTC().Format(time.RFC3339),
			"scopes":           k.Scopes,
			"tags":             k.Tags,
			"issuer":           k.Issuer,
			"subject":          k.Subject,
			"audience":         k.Audience,
			"customClaimRules": k.CustomClaimRules,
		})
	})
}

// checkIssuer refuses an issuer that is not an https URL (or http on
// loopback) without query or fragment.
func checkIssuer(iss string) string {
	u, err := url.Parse(iss)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Sprintf("issuer %q is not a valid URL (https://host[/path], no query or fragment)", iss)
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() || u.Hostname() == "localhost" {
			return ""
		}
	}
	return fmt.Sprintf("issuer %q must be an https URL", iss)
}

// tokenExchange trades an ID token for an API token of a federated
// identity. Errors are OAuth errors (error, error_description) with the
// API's message field as well.
func (s *Server) tokenExchange(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	id, raw := r.PostForm.Get("client_id"), r.PostForm.Get("jwt")
	if id == "" || raw == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "client_id and jwt are required")
		return
	}
	s.mu.Lock()
	k := s.keys[id]
	if k == nil || k.Type != KeyTypeFederated || s.revokedLocked(k) {
		s.mu.Unlock()
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", fmt.Sprintf("federated identity %q not found (deleted or never created)", id))
		return
	}
	ident := k.KeyInfo
	f, failed := s.popFailureLocked("oauth.token_exchange")
	s.mu.Unlock()
	if failed {
		writeError(w, f.status, f.message)
		return
	}
	if reason := s.checkIDToken(r.Context(), ident, raw); reason != "" {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_grant", reason)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[id]; k == nil || s.revokedLocked(k) {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", fmt.Sprintf("federated identity %q not found (deleted or never created)", id))
		return
	}
	s.writeAccessTokenLocked(w, ident.ID, ident.Scopes, "federated identity access token")
}

// idClaims are the claims checked; Extra holds all of them for custom
// claim rules.
type idClaims struct {
	jwt.Claims
	Extra map[string]any `json:"-"`
}

// checkIDToken reports why raw is not an acceptable ID token for ident,
// or "" if it is.
func (s *Server) checkIDToken(ctx context.Context, ident KeyInfo, raw string) string {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.RS384, jose.ES384, jose.RS512, jose.PS256, jose.EdDSA})
	if err != nil {
		return "the ID token is not a signed JWT: " + err.Error()
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return "the ID token's claims do not parse: " + err.Error()
	}
	if unverified.Issuer != ident.Issuer {
		return fmt.Sprintf("ID token issuer %q is not the federated identity's issuer %q", unverified.Issuer, ident.Issuer)
	}
	kid := tok.Headers[0].KeyID
	key, reason := s.issuerKey(ctx, ident.Issuer, kid)
	if reason != "" {
		return reason
	}
	var claims jwt.Claims
	extra := map[string]any{}
	if err := tok.Claims(key, &claims, &extra); err != nil {
		return fmt.Sprintf("ID token signature does not verify with the issuer's key %q: %v", kid, err)
	}
	now := s.now()
	switch {
	case claims.Expiry == nil:
		return "ID token has no exp claim"
	case !now.Before(claims.Expiry.Time()):
		return fmt.Sprintf("ID token expired at %s", claims.Expiry.Time().UTC().Format(time.RFC3339))
	case claims.NotBefore != nil && now.Add(idTokenLeeway).Before(claims.NotBefore.Time()):
		return fmt.Sprintf("ID token is not valid before %s (nbf)", claims.NotBefore.Time().UTC().Format(time.RFC3339))
	case claims.IssuedAt != nil && now.Add(idTokenLeeway).Before(claims.IssuedAt.Time()):
		return fmt.Sprintf("ID token was issued in the future (iat %s)", claims.IssuedAt.Time().UTC().Format(time.RFC3339))
	case !claims.Audience.Contains(ident.Audience):
		return fmt.Sprintf("ID token audience %q does not include the federated identity's audience %q", []string(claims.Audience), ident.Audience)
	case !globMatch(ident.Subject, claims.Subject):
		return fmt.Sprintf("ID token subject %q does not match the federated identity's subject %q", claims.Subject, ident.Subject)
	}
	for name, want := range ident.CustomClaimRules {
		got, ok := extra[name].(string)
		if !ok || !globMatch(want, got) {
			return fmt.Sprintf("ID token claim %q (%v) does not match the federated identity's rule %q", name, extra[name], want)
		}
	}
	return ""
}

// issuerKey finds the key kid of issuer, from the cached JWKS or, when
// it lacks kid, a fresh one found by OIDC discovery.
func (s *Server) issuerKey(ctx context.Context, issuer, kid string) (*jose.JSONWebKey, string) {
	c := &s.issuers
	c.mu.Lock()
	defer c.mu.Unlock()
	if set := c.sets[issuer]; set != nil {
		if k := set.Key(kid); len(k) > 0 {
			return &k[0], ""
		}
	}
	set, err := s.discoverKeys(ctx, issuer)
	if err != nil {
		return nil, fmt.Sprintf("cannot fetch the issuer's keys by OIDC discovery: %v", err)
	}
	if c.sets == nil {
		c.sets, c.fetches = map[string]*jose.JSONWebKeySet{}, map[string]int{}
	}
	c.sets[issuer] = set
	c.fetches[issuer]++
	k := set.Key(kid)
	if len(k) == 0 {
		return nil, fmt.Sprintf("ID token is signed with key id %q, which the issuer's JWKS does not publish", kid)
	}
	return &k[0], ""
}

// IssuerFetches is how many times the fake fetched issuer's JWKS.
func (s *Server) IssuerFetches(issuer string) int {
	s.issuers.mu.Lock()
	defer s.issuers.mu.Unlock()
	return s.issuers.fetches[issuer]
}

// discoverKeys fetches <issuer>/.well-known/openid-configuration, checks
// that it names issuer, and fetches its jwks_uri.
func (s *Server) discoverKeys(ctx context.Context, issuer string) (*jose.JSONWebKeySet, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := s.getJSON(ctx, strings.TrimRight(issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
		return nil, err
	}
	if doc.Issuer != issuer {
		return nil, fmt.Errorf("discovery document names issuer %q, not %q", doc.Issuer, issuer)
	}
	if msg := checkIssuer(doc.JWKSURI); msg != "" {
		return nil, fmt.Errorf("jwks_uri %q is not an https URL", doc.JWKSURI)
	}
	var set jose.JSONWebKeySet
	if err := s.getJSON(ctx, doc.JWKSURI, &set); err != nil {
		return nil, err
	}
	return &set, nil
}

func (s *Server) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.issuerHTTP.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// globMatch matches s against pattern, in which "*" stands for any run of
// characters (as in a federated identity's subject and claim rules).
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}
