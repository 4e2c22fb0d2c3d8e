package httppolicy

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// oidc is agentgateway's browser login policy
// (crates/agentgateway/src/http/oidc): the gateway runs the OpenID
// Connect authorization-code flow itself.
//
//   - A request without a valid session is sent (302) to the provider's
//     authorization endpoint with response_type=code, client_id,
//     redirect_uri, scope ("openid" first), state, nonce and a PKCE S256
//     code_challenge. The transaction (state, nonce, PKCE verifier, the
//     local path to return to) is kept in an encrypted cookie
//     agw_oidc_t_<id>.<transaction> for 5 minutes.
//   - GET <redirectURI path>?state=...&code=... is the callback: the state
//     must match the transaction cookie's, the code is exchanged at the
//     token endpoint (client_secret_basic or _post, with the PKCE
//     verifier), the ID token is verified against the provider's JWKS
//     (issuer, audience = clientId, exp, nonce), and the browser is sent
//     back to where it started with a session cookie agw_oidc_s_<id>
//     holding the ID token. The session lasts until the ID token's exp,
//     at most an hour; after that the next request logs in again.
//   - A request with a valid session goes on, with the ID token's claims
//     as jwt.* (CEL rules, access log, jwt.sub), as after jwtAuth. The
//     backend gets no claims unless a policy passes them on.
//   - CORS preflights pass through unauthenticated.
//
// Cookies are HttpOnly, SameSite=Lax, Path=/, Secure when redirectURI is
// https, and sealed with AES-256-GCM under the key in OIDC_COOKIE_SECRET
// (64 hex characters, as agentgateway) or, without it, a key made for
// this process, so sessions end when the gateway restarts and are not
// shared between replicas. agentgateway has no logout; neither do we:
// a session ends when its cookie expires or is deleted.
//
// Unlike agentgateway, which fetches discovery and the JWKS when it loads
// the config (and refuses a config whose provider is down), tailgate
// fetches them on the first request that needs them, and again after a
// failure at most every 5 s: a config loads and validates offline.
var oidc = module("oidc", Authentication,
	func(p *config.RoutePolicies) *config.OIDC { return p.OIDC },
	compileOIDC)

const (
	oidcCookiePrefix   = "agw_oidc_"
	oidcSessionTTL     = time.Hour
	oidcTransactionTTL = 5 * time.Minute
	oidcRetryAfter     = 5 * time.Second
	oidcTokenBodyLimit = 64 << 10
	oidcMaxCookie      = 3800 // below browsers' ~4 KiB per cookie
	oidcOriginalURIMax = 2048
)

// oidcCookieSecretEnv names the session cookie key, as in agentgateway.
const oidcCookieSecretEnv = "OIDC_COOKIE_SECRET"

// processCookieKey is the session key when OIDC_COOKIE_SECRET is unset;
// one per process, so that a hot reload keeps sessions.
var processCookieKey = sync.OnceValue(func() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("oidc: no randomness: " + err.Error())
	}
	return k
})

// oidcCookieKey is the AES-256 key sealing OIDC cookies.
func oidcCookieKey() ([]byte, error) {
	s := strings.TrimSpace(os.Getenv(oidcCookieSecretEnv))
	if s == "" {
		return processCookieKey(), nil
	}
	k, err := hex.DecodeString(s)
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("%s must be 32 bytes as 64 hex characters (openssl rand -hex 32)", oidcCookieSecretEnv)
	}
	return k, nil
}

type oidcLogin struct {
	policyID     string // the policy's YAML path; sessions do not cross policies
	issuer       string
	clientID     string
	clientSecret string
	redirectURI  string
	callbackPath string
	secure       bool
	scopes       string
	sessionName  string
	txPrefix     string
	aead         cipher.AEAD
	client       *http.Client
	jwksRefetch  time.Duration
	// discoveryURL is where the OpenID configuration is fetched: the
	// issuer's, or discovery.url.
	discoveryURL string

	mu       sync.Mutex
	provider *oidcProvider // nil until discovered
	failedAt time.Time
	failure  error
}

type oidcProvider struct {
	authorize string
	token     string
	postAuth  bool // client_secret_post; else client_secret_basic
	idTokens  *JWTAuth
}

func compileOIDC(o *config.OIDC, path string, c Compiler) Policy {
	key, err := oidcCookieKey()
	if err != nil {
		c.Fail(o.Pos, path, err)
		return nil
	}
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	ru, _ := url.Parse(o.RedirectURI) // checked by config
	sum := sha256.Sum256([]byte(path))
	id := hex.EncodeToString(sum[:8])
	l := &oidcLogin{
		policyID: path, issuer: o.Issuer, clientID: o.ClientID, clientSecret: o.ClientSecret,
		redirectURI: o.RedirectURI, callbackPath: ru.EscapedPath(), secure: ru.Scheme == "https",
		scopes:      strings.Join(oidcScopes(o.Scopes), " "),
		sessionName: oidcCookiePrefix + "s_" + id, txPrefix: oidcCookiePrefix + "t_" + id,
		aead: aead, client: c.HTTPClient(), jwksRefetch: c.JWKSRefetchInterval(),
		discoveryURL: strings.TrimSuffix(o.Issuer, "/") + "/.well-known/openid-configuration",
	}
	if d := o.Discovery; d != nil {
		if !l.discoveryOverride(d, path+".discovery", c) {
			return nil
		}
	}
	if o.JWKS != nil {
		ks, err := compileJWKS(o.JWKS, c)
		if err != nil {
			c.Fail(o.JWKS.Pos, path+".jwks", err)
			return nil
		}
		l.provider = &oidcProvider{
			authorize: o.AuthorizationEndpoint, token: o.TokenEndpoint,
			postAuth: o.TokenEndpointAuth == "clientSecretPost",
			idTokens: l.idTokenVerifier(ks),
		}
	}
	return l
}

// oidcScopes puts openid first and drops repeats.
func oidcScopes(extra []string) []string {
	out := []string{"openid"}
	for _, s := range extra {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (l *oidcLogin) idTokenVerifier(ks *JWKS) *JWTAuth {
	j, _ := NewJWTAuth(JWTStrict, []JWTProviderSpec{{Issuer: l.issuer, Audiences: []string{l.clientID}, JWKS: ks}})
	return j
}

// Run serves the callback, lets a request with a valid session through
// with its claims, and sends any other to the provider's login.
func (l *oidcLogin) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	if r.Method == http.MethodGet && r.URL.EscapedPath() == l.callbackPath {
		q := r.URL.Query()
		if q.Has("state") && (q.Has("code") || q.Has("error")) {
			l.callback(w, r, x, q)
			return false
		}
	}
	if r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		return true
	}
	if claims := l.session(r); claims != nil {
		x.Authenticated(claims)
		return true
	}
	l.startLogin(w, r, x)
	return false
}

// oidcTransaction is one login in progress, sealed in its cookie.
type oidcTransaction struct {
	PolicyID      string `json:"policyId"`
	TransactionID string `json:"transactionId"`
	CSRFState     string `json:"csrfState"`
	Nonce         string `json:"nonce"`
	PKCEVerifier  string `json:"pkceVerifier"`
	OriginalURI   string `json:"originalUri"`
	ExpiresAt     int64  `json:"expiresAtUnix"`
}

// oidcState is the state parameter: which transaction, and its CSRF token.
type oidcState struct {
	TransactionID string `json:"transactionId"`
	CSRFState     string `json:"csrfState"`
}

// oidcSession is a logged-in browser, sealed in its cookie.
type oidcSession struct {
	PolicyID   string `json:"policyId"`
	RawIDToken string `json:"rawIdToken"`
	ExpiresAt  int64  `json:"expiresAtUnix"`
}

func (l *oidcLogin) session(r *http.Request) map[string]any {
	c, err := r.Cookie(l.sessionName)
	if err != nil {
		return nil
	}
	var s oidcSession
	if l.open(c.Value, "session", &s) != nil || s.PolicyID != l.policyID || s.ExpiresAt <= time.Now().Unix() {
		return nil
	}
	p, err := l.discover(r.Context())
	if err != nil {
		return nil
	}
	claims, _, reason := p.idTokens.verify(r.Context(), s.RawIDToken)
	if reason != "" {
		return nil
	}
	return claims
}

func (l *oidcLogin) startLogin(w http.ResponseWriter, r *http.Request, x Exchange) {
	p, err := l.discover(r.Context())
	if err != nil {
		Deny(w, x, "oidc", "provider unavailable: "+err.Error(), http.StatusBadGateway, "login provider unavailable")
		return
	}
	verifier := randomToken(32)
	challenge := sha256.Sum256([]byte(verifier))
	tx := oidcTransaction{
		PolicyID: l.policyID, TransactionID: randomToken(16), CSRFState: randomToken(16),
		Nonce: randomToken(16), PKCEVerifier: verifier, OriginalURI: localReturnPath(r.URL.RequestURI()),
		ExpiresAt: time.Now().Add(oidcTransactionTTL).Unix(),
	}
	stateJSON, _ := json.Marshal(oidcState{TransactionID: tx.TransactionID, CSRFState: tx.CSRFState})
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {l.clientID},
		"redirect_uri":          {l.redirectURI},
		"scope":                 {l.scopes},
		"state":                 {base64.RawURLEncoding.EncodeToString(stateJSON)},
		"nonce":                 {tx.Nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
	}
	loc := p.authorize
	if strings.Contains(loc, "?") {
		loc += "&" + q.Encode()
	} else {
		loc += "?" + q.Encode()
	}
	l.setCookie(w, l.txPrefix+"."+tx.TransactionID, l.seal(tx, "transaction"), oidcTransactionTTL)
	x.Note("oidc: login required")
	http.Redirect(w, r, loc, http.StatusFound)
}

// callback finishes a login. Every refusal is a 400 except the
// provider's own failures (token exchange, ID token), which are 500, as
// in agentgateway.
func (l *oidcLogin) callback(w http.ResponseWriter, r *http.Request, x Exchange, q url.Values) {
	bad := func(reason string) {
		Deny(w, x, "oidc", reason, http.StatusBadRequest, "login failed: "+reason)
	}
	var st oidcState
	raw, err := base64.RawURLEncoding.DecodeString(q.Get("state"))
	if err != nil || json.Unmarshal(raw, &st) != nil || st.TransactionID == "" {
		bad("invalid callback")
		return
	}
	txName := l.txPrefix + "." + st.TransactionID
	c, err := r.Cookie(txName)
	if err != nil {
		bad("missing transaction")
		return
	}
	if e := q.Get("error"); e != "" {
		bad("provider returned error " + sanitize(e))
		return
	}
	var tx oidcTransaction
	if l.open(c.Value, "transaction", &tx) != nil || tx.ExpiresAt <= time.Now().Unix() {
		bad("invalid transaction")
		return
	}
	switch {
	case tx.PolicyID != l.policyID:
		bad("policy mismatch")
		return
	case !equalConstantTime(tx.TransactionID, st.TransactionID):
		bad("invalid transaction")
		return
	case !equalConstantTime(tx.CSRFState, st.CSRFState):
		bad("csrf mismatch")
		return
	}
	p, err := l.discover(r.Context())
	if err != nil {
		Deny(w, x, "oidc", "provider unavailable: "+err.Error(), http.StatusBadGateway, "login provider unavailable")
		return
	}
	idToken, err := l.exchange(r.Context(), p, q.Get("code"), tx.PKCEVerifier)
	if err != nil {
		Deny(w, x, "oidc", "token exchange failed: "+err.Error(), http.StatusInternalServerError, "login failed")
		return
	}
	claims, _, reason := p.idTokens.verify(r.Context(), idToken)
	if reason != "" {
		Deny(w, x, "oidc", "invalid id token: "+reason, http.StatusInternalServerError, "login failed")
		return
	}
	if n, _ := claims["nonce"].(string); !equalConstantTime(n, tx.Nonce) {
		bad("nonce mismatch")
		return
	}
	expires := time.Now().Add(oidcSessionTTL).Unix()
	if exp, ok := claims["exp"].(float64); ok && int64(exp) < expires {
		expires = int64(exp)
	}
	sealed := l.seal(oidcSession{PolicyID: l.policyID, RawIDToken: idToken, ExpiresAt: expires}, "session")
	if len(sealed) > oidcMaxCookie {
		Deny(w, x, "oidc", "session cookie too large", http.StatusInternalServerError, "login failed")
		return
	}
	l.setCookie(w, l.sessionName, sealed, oidcSessionTTL)
	l.setCookie(w, txName, "", 0)
	x.Authenticated(claims) // the access log's jwt.sub for the callback
	x.Note("oidc: logged in")
	http.Redirect(w, r, tx.OriginalURI, http.StatusFound)
}

// exchange trades the code for the ID token (RFC 6749 §4.1.3, RFC 7636).
func (l *oidcLogin) exchange(ctx context.Context, p *oidcProvider, code, verifier string) (string, error) {
	if code == "" {
		return "", errors.New("no code")
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {l.redirectURI},
		"code_verifier": {verifier},
	}
	if p.postAuth {
		form.Set("client_id", l.clientID)
		form.Set("client_secret", l.clientSecret)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.token, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if !p.postAuth {
		req.SetBasicAuth(url.QueryEscape(l.clientID), url.QueryEscape(l.clientSecret))
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, oidcTokenBodyLimit))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token endpoint returned %d: %s", resp.StatusCode, sanitize(string(body[:min(len(body), 256)])))
	}
	var tr struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", fmt.Errorf("token response: %w", err)
	}
	if tr.IDToken == "" {
		return "", errors.New("token response has no id_token")
	}
	return tr.IDToken, nil
}

// discover returns the provider, fetching its OpenID configuration on
// first use (and after a failure, at most every oidcRetryAfter).
func (l *oidcLogin) discover(ctx context.Context) (*oidcProvider, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.provider != nil {
		return l.provider, nil
	}
	if l.failure != nil && time.Since(l.failedAt) < oidcRetryAfter {
		return nil, l.failure
	}
	p, err := l.fetchDiscovery(ctx)
	if err != nil {
		l.failure, l.failedAt = err, time.Now()
		return nil, err
	}
	l.provider, l.failure = p, nil
	return p, nil
}

func (l *oidcLogin) fetchDiscovery(ctx context.Context) (*oidcProvider, error) {
	u := l.discoveryURL
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("discovery %s: status %d", u, resp.StatusCode)
	}
	return l.parseDiscovery(io.LimitReader(resp.Body, 1<<20), u)
}

// parseDiscovery reads an OpenID configuration; u names it in errors.
func (l *oidcLogin) parseDiscovery(body io.Reader, u string) (*oidcProvider, error) {
	var doc struct {
		Issuer        string   `json:"issuer"`
		Authorization string   `json:"authorization_endpoint"`
		Token         string   `json:"token_endpoint"`
		JWKSURI       string   `json:"jwks_uri"`
		AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := json.NewDecoder(body).Decode(&doc); err != nil {
		return nil, fmt.Errorf("discovery %s: %w", u, err)
	}
	if doc.Issuer != l.issuer {
		return nil, fmt.Errorf("discovery issuer mismatch: expected %s, got %s", l.issuer, sanitize(doc.Issuer))
	}
	for _, e := range []string{doc.Authorization, doc.Token, doc.JWKSURI} {
		if pu, err := url.Parse(e); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, fmt.Errorf("discovery %s: endpoint %q is not an absolute http(s) URL", u, sanitize(e))
		}
	}
	p := &oidcProvider{authorize: doc.Authorization, token: doc.Token}
	// agentgateway's parse_token_endpoint_auth_methods: basic when
	// offered (or when the provider says nothing), else post.
	switch {
	case doc.AuthMethods == nil || slices.Contains(doc.AuthMethods, "client_secret_basic"):
	case slices.Contains(doc.AuthMethods, "client_secret_post"):
		p.postAuth = true
	default:
		return nil, errors.New("provider supports neither client_secret_basic nor client_secret_post")
	}
	ks := NewJWKSURL(doc.JWKSURI, l.client)
	ks.RefetchInterval = l.jwksRefetch
	p.idTokens = l.idTokenVerifier(ks)
	return p, nil
}

// seal encrypts v for a cookie; kind is authenticated with it, so a
// transaction cookie never passes for a session.
func (l *oidcLogin) seal(v any, kind string) string {
	plain, _ := json.Marshal(v)
	nonce := make([]byte, l.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("oidc: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(l.aead.Seal(nonce, nonce, plain, []byte(kind)))
}

func (l *oidcLogin) open(s, kind string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < l.aead.NonceSize() {
		return errors.New("malformed cookie")
	}
	n := l.aead.NonceSize()
	plain, err := l.aead.Open(nil, raw[:n], raw[n:], []byte(kind))
	if err != nil {
		return err
	}
	return json.Unmarshal(plain, v)
}

func (l *oidcLogin) setCookie(w http.ResponseWriter, name, value string, ttl time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: l.secure, SameSite: http.SameSiteLaxMode, MaxAge: int(ttl.Seconds())}
	if ttl == 0 {
		c.MaxAge = -1 // Max-Age=0: delete now
	}
	http.SetCookie(w, c)
}

// localReturnPath is where the browser goes after login: the request's
// own path and query when it is plainly local, else "/" (never another
// site, agentgateway's normalize_original_uri).
func localReturnPath(uri string) string {
	if len(uri) > oidcOriginalURIMax || !strings.HasPrefix(uri, "/") || strings.HasPrefix(uri, "//") || strings.Contains(uri, `\`) {
		return "/"
	}
	dec, err := url.PathUnescape(uri)
	if err != nil || strings.HasPrefix(dec, "//") || strings.Contains(dec, `\`) {
		return "/"
	}
	return uri
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("oidc: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func equalConstantTime(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
