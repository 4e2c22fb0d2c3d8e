package httppolicy

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tailgate-dev/tailgate/internal/expiring"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// JWTMode says what happens to requests without a valid token.
type JWTMode string

const (
	// Strict: a valid token is required.
	JWTStrict JWTMode = "strict"
	// Optional (agentgateway's default): no token passes; a token that is
	// present must be valid.
	JWTOptional JWTMode = "optional"
	// Permissive: tokens are validated when present, but nothing is
	// rejected; only valid tokens yield claims.
	JWTPermissive JWTMode = "permissive"
)

// DefaultAlgorithms are accepted when a provider names none: asymmetric
// algorithms only, so a token signed with HMAC using a public key as the
// secret (the classic RS256→HS256 confusion) can never verify.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// JWTProviderSpec configures one issuer.
type JWTProviderSpec struct {
	Issuer         string
	Audiences      []string
	RequiredClaims []string // default ["exp"]
	Algorithms     []string // default DefaultAlgorithms
	JWKS           *JWKS
}

// JWTAuth validates bearer tokens from the Authorization header.
type JWTAuth struct {
	Mode      JWTMode
	providers []jwtProvider
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time

	verified *expiring.Cache[[32]byte, *verifiedToken] // SHA-256 of the raw token → signature already checked
}

type jwtProvider struct {
	JWTProviderSpec
	algs []jose.SignatureAlgorithm
}

// NewJWTAuth builds a JWTAuth. mode "" means optional.
func NewJWTAuth(mode JWTMode, providers []JWTProviderSpec) (*JWTAuth, error) {
	if mode == "" {
		mode = JWTOptional
	}
	j := &JWTAuth{Mode: mode, verified: expiring.New[[32]byte, *verifiedToken](maxVerified)}
	for _, p := range providers {
		if p.JWKS == nil {
			return nil, fmt.Errorf("jwt provider %s: no jwks", p.Issuer)
		}
		names := p.Algorithms
		if len(names) == 0 {
			names = DefaultAlgorithms
		}
		jp := jwtProvider{JWTProviderSpec: p}
		for _, a := range names {
			jp.algs = append(jp.algs, jose.SignatureAlgorithm(a))
		}
		if p.RequiredClaims == nil {
			jp.RequiredClaims = []string{"exp"}
		}
		j.providers = append(j.providers, jp)
	}
	return j, nil
}

// JWTOutcome is the result of checking one request.
type JWTOutcome struct {
	// Claims are the verified token's claims; nil without a valid token.
	Claims map[string]any
	// Reject says the request must get a 401.
	Reject bool
	// Reason says why there are no claims ("token missing", "token
	// expired"...); empty when the token is valid.
	Reason string
	// Issuer of the verified token.
	Issuer string
}

// Reasons a token is refused; stable strings for logs and metrics.
const (
	ReasonMissing      = "token missing"
	ReasonMalformed    = "malformed token"
	ReasonAlgorithm    = "algorithm not allowed"
	ReasonUnknownKey   = "unknown key id"
	ReasonSignature    = "invalid signature"
	ReasonExpired      = "token expired"
	ReasonNotYetValid  = "token not yet valid"
	ReasonIssuer       = "wrong issuer"
	ReasonAudience     = "wrong audience"
	ReasonMissingClaim = "required claim missing"
	ReasonJWKS         = "signing keys unavailable"
)

// Check validates the request's bearer token, if any.
func (j *JWTAuth) Check(ctx context.Context, r *http.Request) JWTOutcome {
	raw, ok := bearerToken(r)
	if !ok {
		return JWTOutcome{Reject: j.Mode == JWTStrict, Reason: ReasonMissing}
	}
	claims, iss, reason := j.verify(ctx, raw)
	if reason != "" {
		return JWTOutcome{Reject: j.Mode != JWTPermissive, Reason: reason}
	}
	return JWTOutcome{Claims: claims, Issuer: iss}
}

func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	tok := strings.TrimSpace(h[7:])
	return tok, tok != ""
}

type joseHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

func (j *JWTAuth) verify(ctx context.Context, raw string) (map[string]any, string, string) {
	// RSA verification dominates a request's cost; a token seen within the
	// last minute skips it (but not the expiry and audience checks).
	if v := j.cached(raw); v != nil {
		return j.validate(v.p, v.std, v.all)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, "", ReasonMalformed
	}
	var hdr joseHeader
	var unverified struct {
		Iss string `json:"iss"`
	}
	if decodeSegment(parts[0], &hdr) != nil || decodeSegment(parts[1], &unverified) != nil {
		return nil, "", ReasonMalformed
	}
	p := j.provider(unverified.Iss)
	if p == nil {
		return nil, "", ReasonIssuer
	}
	if !slices.Contains(p.algs, jose.SignatureAlgorithm(hdr.Alg)) {
		return nil, "", ReasonAlgorithm + ": " + sanitize(hdr.Alg)
	}
	tok, err := jwt.ParseSigned(raw, p.algs)
	if err != nil {
		return nil, "", ReasonMalformed
	}
	key, reason := p.JWKS.key(ctx, hdr.Kid, hdr.Alg)
	if reason != "" {
		return nil, "", reason
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(key.Key, &std, &all); err != nil {
		return nil, "", ReasonSignature
	}
	j.remember(raw, p, std, all)
	return j.validate(p, std, all)
}

// verifiedToken is a token whose signature checked out; its time claims
// are still validated on every use.
type verifiedToken struct {
	p   *jwtProvider
	std jwt.Claims
	all map[string]any
}

// verifiedTTL bounds how long a signature check is reused. A key removed
// from the JWKS stops being honoured within this time.
const verifiedTTL = time.Minute

// The cache is keyed by the token's SHA-256, so a bearer credential is not
// kept alive in a long-lived map after its request.
func (j *JWTAuth) cached(raw string) *verifiedToken {
	v, _ := j.verified.Get(tokenKey(raw), time.Now())
	return v
}

func (j *JWTAuth) remember(raw string, p *jwtProvider, std jwt.Claims, all map[string]any) {
	now := time.Now()
	j.verified.Put(tokenKey(raw), &verifiedToken{p: p, std: std, all: all}, now.Add(verifiedTTL), now)
}

// tokenKey is the SHA-256 of a raw token. sha256.Sum256([]byte(raw))
// would copy the token (most of a kilobyte) to the heap on every request;
// the copy goes through a pooled buffer instead, wiped before it is
// pooled so no credential outlives its request there either.
func tokenKey(raw string) [32]byte {
	bp := tokenBufs.Get().(*[]byte)
	b := append((*bp)[:0], raw...)
	k := sha256.Sum256(b)
	clear(b)
	if cap(b) <= maxPooledToken {
		*bp = b[:0]
		tokenBufs.Put(bp)
	}
	return k
}

// maxPooledToken bounds the buffers kept: a rare huge token is not.
const maxPooledToken = 8 << 10

var tokenBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxVerified bounds the verified-token cache.
const maxVerified = 10000

func (j *JWTAuth) validate(p *jwtProvider, std jwt.Claims, all map[string]any) (map[string]any, string, string) {
	now := time.Now
	if j.Now != nil {
		now = j.Now
	}
	exp := jwt.Expected{Issuer: p.Issuer, Time: now()}
	if len(p.Audiences) > 0 {
		exp.AnyAudience = jwt.Audience(p.Audiences)
	}
	// One minute of leeway for clock skew, as jsonwebtoken (agentgateway) does.
	switch err := std.ValidateWithLeeway(exp, time.Minute); {
	case errors.Is(err, jwt.ErrExpired):
		return nil, "", ReasonExpired
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, "", ReasonNotYetValid
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return nil, "", ReasonIssuer
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, "", ReasonAudience
	case err != nil:
		return nil, "", ReasonMalformed
	}
	for _, c := range p.RequiredClaims {
		if _, ok := all[c]; !ok {
			return nil, "", ReasonMissingClaim + ": " + sanitize(c)
		}
	}
	return all, p.Issuer, ""
}

func (j *JWTAuth) provider(iss string) *jwtProvider {
	for i := range j.providers {
		if j.providers[i].Issuer == iss {
			return &j.providers[i]
		}
	}
	return nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// sanitize keeps attacker-chosen strings short and printable in logs.
func sanitize(s string) string {
	if len(s) > 32 {
		s = s[:32]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

// JWKS is a key set from inline JSON, a file or a URL. Keys are cached;
// a token with an unknown key id triggers one refetch, at most once per
// RefetchInterval (so a flood of made-up kids cannot hammer the IdP), and
// a remote set older than MaxAge is refetched on use.
type JWKS struct {
	inline string
	file   string
	url    string
	client *http.Client

	// RefetchInterval is the minimum time between refetches caused by an
	// unknown kid. MaxAge bounds how long a remote set is trusted.
	RefetchInterval time.Duration
	MaxAge          time.Duration

	mu          sync.Mutex
	keys        jose.JSONWebKeySet
	fetched     time.Time
	lastRefetch time.Time
}

// NewJWKSInline parses an inline key set.
func NewJWKSInline(data string) (*JWKS, error) {
	k := &JWKS{inline: data}
	if err := k.load(context.Background()); err != nil {
		return nil, err
	}
	return k, nil
}

// NewJWKSFile reads a key set from a file now (a config with a missing
// file does not load) and again on unknown key ids.
func NewJWKSFile(path string) (*JWKS, error) {
	k := &JWKS{file: path, RefetchInterval: 10 * time.Second}
	if err := k.load(context.Background()); err != nil {
		return nil, err
	}
	return k, nil
}

// NewJWKSURL fetches a key set from url on first use. client nil means
// a client with a 10 s timeout.
func NewJWKSURL(url string, client *http.Client) *JWKS {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &JWKS{url: url, client: client, RefetchInterval: 10 * time.Second, MaxAge: 10 * time.Minute}
}

func (k *JWKS) load(ctx context.Context) error {
	var data []byte
	var err error
	switch {
	case k.url != "":
		data, err = k.fetch(ctx)
	case k.file != "":
		data, err = os.ReadFile(k.file)
		if err != nil {
			err = fmt.Errorf("read jwks: %w", err)
		}
	default:
		data = []byte(k.inline)
	}
	if err != nil {
		return err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return fmt.Errorf("parse jwks %s: %w", k.describe(), err)
	}
	k.keys = set
	k.fetched = time.Now()
	return nil
}

func (k *JWKS) describe() string {
	switch {
	case k.url != "":
		return k.url
	case k.file != "":
		return k.file
	}
	return "(inline)"
}

func (k *JWKS) fetch(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks %s: %w", k.url, err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks %s: %w", k.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks %s: status %s", k.url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// key finds the key for kid (and alg). It reloads the set when the kid is
// unknown, rate limited, or when a remote set is stale.
func (k *JWKS) key(ctx context.Context, kid, alg string) (*jose.JSONWebKey, string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.url != "" && (k.fetched.IsZero() || (k.MaxAge > 0 && time.Since(k.fetched) > k.MaxAge)) {
		if err := k.load(ctx); err != nil && k.fetched.IsZero() {
			return nil, ReasonJWKS
		}
	}
	if key := k.find(kid, alg); key != nil {
		return key, ""
	}
	if k.inline == "" && (k.lastRefetch.IsZero() || time.Since(k.lastRefetch) >= k.RefetchInterval) {
		k.lastRefetch = time.Now()
		if err := k.load(ctx); err == nil {
			if key := k.find(kid, alg); key != nil {
				return key, ""
			}
		}
	}
	return nil, ReasonUnknownKey
}

func (k *JWKS) find(kid, alg string) *jose.JSONWebKey {
	for i := range k.keys.Keys {
		key := &k.keys.Keys[i]
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		if kid != "" && key.KeyID != kid {
			continue
		}
		if key.Algorithm != "" && key.Algorithm != alg {
			continue
		}
		// A public key set never holds symmetric keys in practice; refuse
		// them so a leaked "oct" key cannot turn into a signing secret.
		if _, sym := key.Key.([]byte); sym {
			continue
		}
		return key
	}
	return nil
}

var jwtAuth = module("jwtAuth", Authentication,
	func(p *config.RoutePolicies) *config.JWTAuth { return p.JWTAuth },
	compileJWTAuth)

// compileJWTAuth reads each provider's JWKS (a URL is fetched on first
// use). config has folded the single-provider form into Providers.
func compileJWTAuth(j *config.JWTAuth, path string, c Compiler) Policy {
	var specs []JWTProviderSpec
	for i, p := range j.Providers {
		pp := fmt.Sprintf("%s.providers[%d]", path, i)
		if len(j.Providers) == 1 && j.Issuer != "" {
			pp = path
		}
		if p.JWKS == nil {
			continue
		}
		ks, err := compileJWKS(p.JWKS, c)
		if err != nil {
			c.Fail(p.JWKS.Pos, pp+".jwks", err)
			continue
		}
		spec := JWTProviderSpec{Issuer: p.Issuer, Audiences: p.Audiences, Algorithms: p.Algorithms, JWKS: ks}
		if p.JWTValidationOptions != nil && p.JWTValidationOptions.RequiredClaims != nil {
			spec.RequiredClaims = p.JWTValidationOptions.RequiredClaims
		}
		specs = append(specs, spec)
	}
	ja, err := NewJWTAuth(JWTMode(j.Mode), specs)
	if err != nil {
		c.Fail(j.Pos, path, err)
		return nil
	}
	return ja
}

// compileJWKS opens a key set from the config: a file or inline set is
// read now, a URL on first use.
func compileJWKS(src *config.JWKSSource, c Compiler) (*JWKS, error) {
	switch {
	case src.URL != "":
		ks := NewJWKSURL(src.URL, c.HTTPClient())
		ks.RefetchInterval = c.JWKSRefetchInterval()
		return ks, nil
	case src.File != "":
		return NewJWKSFile(c.Rel(src.File))
	default:
		return NewJWKSInline(src.Inline)
	}
}

// Run refuses r with 401 when the mode requires a valid token it lacks,
// and hands a valid token's claims to the exchange.
func (j *JWTAuth) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	out := j.Check(r.Context(), r)
	if out.Reject {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		Deny(w, x, "jwtAuth", out.Reason, http.StatusUnauthorized, "authentication failed")
		return false
	}
	if out.Claims != nil {
		x.Authenticated(out.Claims)
	} else if out.Reason != "" && out.Reason != ReasonMissing {
		x.Note("jwt ignored: " + out.Reason) // permissive mode: logged, not refused
	}
	return true
}
