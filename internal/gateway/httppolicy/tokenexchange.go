package httppolicy

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// TokenExchange is backendAuth.oauthTokenExchange: the caller's bearer
// token is traded at an OAuth token endpoint for one meant for the
// backend, which replaces it in the Authorization header, so the backend
// never sees the caller's token. It follows agentgateway
// (crates/agentgateway/src/http/auth/oauth):
//
//   - grant tokenExchange (RFC 8693: subject_token, subject_token_type,
//     requested_token_type when set) or jwtBearer (RFC 7523: assertion);
//     audience, scope (space-separated), resource and additionalParams;
//     the client authenticates with HTTP Basic or in the form;
//   - the answer must be 2xx JSON with a non-empty access_token and
//     token_type Bearer (and, when a token type was requested, a matching
//     issued_token_type if it names one);
//   - answers are cached by a SHA-256 of the caller's token and the
//     request's parameters, until expires_in (default 5m) or the caller's
//     token's own exp, less 15 s;
//   - a request without a bearer token, whose additionalParams cannot be
//     computed, or whose token the server refuses (a 4xx other than 401
//     and 403) gets 400; any other failure (server unreachable, 401/403 —
//     the gateway's own credentials —, 5xx, a malformed answer) gets 500.
//     Either way the request does not reach the backend.
//
// Neither token nor the client secret is ever logged or returned: access
// log reasons name the failure and, at most, the server's status and
// OAuth error code.
type TokenExchange struct {
	endpoint           string
	jwtBearer          bool
	subjectTokenType   string
	audiences          []string
	scopes             []string
	resources          []string
	requestedTokenType string
	clientID           string
	clientSecret       string
	clientSecretPost   bool
	hasClientAuth      bool
	params             []tokenParam
	cache              *tokenCache
	client             *http.Client
	now                func() time.Time
}

type tokenParam struct {
	name string
	expr *cel.Expression
}

// tokenEndpointTimeout bounds one call to the token endpoint (as
// agentgateway's 10 s).
const tokenEndpointTimeout = 10 * time.Second

func compileTokenExchange(t *config.OAuthTokenExchange, path string, c Compiler) Policy {
	endpoint := t.Host
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		c.Fail(t.Pos, path+".host", fmt.Errorf("want host:port or an http(s) URL, got %q", t.Host))
		return nil
	}
	u.Path = t.Path
	if u.Path == "" {
		u.Path = "/"
	}
	out := &TokenExchange{
		endpoint:           u.String(),
		jwtBearer:          t.GrantType == "jwtBearer",
		subjectTokenType:   config.TokenTypeAccess,
		audiences:          t.Audiences,
		scopes:             t.Scopes,
		resources:          t.Resources,
		requestedTokenType: t.RequestedTokenType,
		client:             c.HTTPClient(),
		now:                time.Now,
	}
	if s := t.SubjectToken; s != nil && s.TokenType != "" {
		out.subjectTokenType = s.TokenType
	}
	if a := t.ClientAuth; a != nil {
		out.hasClientAuth, out.clientID = true, a.ClientID
		out.clientSecretPost = a.Method == "clientSecretPost"
		if a.ClientSecret != nil {
			secret, err := readFileOrInline(a.ClientSecret, c.Rel)
			if err != nil {
				c.Fail(a.ClientSecret.Pos, path+".clientAuth.clientSecret", err)
				return nil
			}
			out.clientSecret = strings.TrimSpace(secret)
		}
	}
	for _, p := range t.AdditionalParams {
		out.params = append(out.params, tokenParam{p.Name, c.Expression(cel.Request, p.Pos, path+".additionalParams."+p.Name, p.Expr)})
	}
	maxEntries, ttl := 8192, 5*time.Minute
	if cc := t.Cache; cc != nil {
		if cc.MaxEntries != nil {
			maxEntries = *cc.MaxEntries
		}
		if cc.DefaultTTL.D > 0 {
			ttl = cc.DefaultTTL.D
		}
	}
	if maxEntries > 0 {
		out.cache = &tokenCache{max: maxEntries, defaultTTL: ttl, entries: map[[32]byte]cachedToken{}}
	}
	return out
}

// exchangeError is a failed exchange: the status the caller gets and the
// reason the access log records (never a token or secret).
type exchangeError struct {
	status int
	reason string
}

func (e *exchangeError) Error() string { return e.reason }

func refused(reason string) *exchangeError {
	return &exchangeError{http.StatusBadRequest, reason}
}

func failed(reason string) *exchangeError {
	return &exchangeError{http.StatusInternalServerError, reason}
}

// Run exchanges the caller's token and puts the result in Authorization.
func (t *TokenExchange) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	tok, err := t.exchange(r, x)
	if err != nil {
		var ee *exchangeError
		if !errors.As(err, &ee) {
			ee = failed("token exchange failed")
		}
		body := "backend authentication failed"
		if ee.status == http.StatusBadRequest {
			body = "token exchange refused the request's credentials"
		}
		Deny(w, x, "backendAuth", ee.reason, ee.status, body)
		return false
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	return true
}

func (t *TokenExchange) exchange(r *http.Request, x Exchange) (string, error) {
	subject := bearerOf(r.Header.Get("Authorization"))
	if subject == "" {
		return "", refused("token exchange: the request has no bearer token")
	}
	form := url.Values{}
	if t.jwtBearer {
		form.Set("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
		form.Set("assertion", subject)
	} else {
		form.Set("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
		form.Set("subject_token", subject)
		form.Set("subject_token_type", t.subjectTokenType)
		if t.requestedTokenType != "" {
			form.Set("requested_token_type", t.requestedTokenType)
		}
	}
	for _, a := range t.audiences {
		form.Add("audience", a)
	}
	if len(t.scopes) > 0 {
		form.Set("scope", strings.Join(t.scopes, " "))
	}
	for _, res := range t.resources {
		form.Add("resource", res)
	}
	var extra []string
	if len(t.params) > 0 {
		vars := x.Vars()
		for _, p := range t.params {
			if p.expr == nil {
				return "", failed("token exchange: additionalParams did not compile")
			}
			v, err := p.expr.Eval(vars)
			var s string
			ok := false
			if err == nil {
				s, ok = v.Value().(string)
			}
			if !ok {
				return "", refused("token exchange: additionalParams." + p.name + " is not a string for this request")
			}
			form.Add(p.name, s)
			extra = append(extra, p.name, s)
		}
	}
	key := t.cacheKey(subject, extra)
	if tok, ok := t.cache.get(key, t.now()); ok {
		return tok, nil
	}
	tok, expiresIn, err := t.fetch(r.Context(), form)
	if err != nil {
		return "", err
	}
	t.cache.put(key, tok, expiresIn, jwtExpiry(subject), t.now())
	return tok, nil
}

// bearerOf is the token of an "Authorization: Bearer <token>" value.
func bearerOf(h string) string {
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

// cacheKey hashes everything that makes one exchange differ from
// another, each field length-prefixed so no two inputs collide; the
// token itself is not kept.
func (t *TokenExchange) cacheKey(subject string, extra []string) [32]byte {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		io.WriteString(h, s)
	}
	field(subject)
	field(t.subjectTokenType)
	for _, s := range extra {
		field(s)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// tokenAnswer is the token endpoint's JSON (RFC 6749 §5.1, RFC 8693 §2.2.1).
type tokenAnswer struct {
	AccessToken     string `json:"access_token"`
	TokenType       string `json:"token_type"`
	IssuedTokenType string `json:"issued_token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Error           string `json:"error"`
}

func (t *TokenExchange) fetch(ctx context.Context, form url.Values) (string, time.Duration, error) {
	if t.hasClientAuth && t.clientSecretPost {
		form.Set("client_id", t.clientID)
		if t.clientSecret != "" {
			form.Set("client_secret", t.clientSecret)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, tokenEndpointTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, failed("token exchange: bad token endpoint")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if t.hasClientAuth && !t.clientSecretPost {
		// RFC 6749 §2.3.1: both parts form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(t.clientID), url.QueryEscape(t.clientSecret))
	}
	client := t.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// Only the cause: the URL (with any userinfo) stays out of the log.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", 0, failed("token exchange: token endpoint unreachable: " + err.Error())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", 0, failed("token exchange: reading the token endpoint's answer failed")
	}
	var ans tokenAnswer
	jsonErr := json.Unmarshal(body, &ans)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		reason := fmt.Sprintf("token exchange: token endpoint answered %d", resp.StatusCode)
		if jsonErr == nil && oauthErrorCode(ans.Error) {
			reason += " " + ans.Error
		}
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != 401 && resp.StatusCode != 403 {
			return "", 0, refused(reason)
		}
		return "", 0, failed(reason)
	}
	switch {
	case jsonErr != nil:
		return "", 0, failed("token exchange: the token endpoint's answer is not JSON")
	case ans.AccessToken == "":
		return "", 0, failed("token exchange: the answer has no access_token")
	case !strings.EqualFold(ans.TokenType, "Bearer"):
		return "", 0, failed("token exchange: the answer's token_type is not Bearer")
	case t.requestedTokenType != "" && ans.IssuedTokenType != "" && ans.IssuedTokenType != t.requestedTokenType:
		return "", 0, failed("token exchange: the answer's issued_token_type is not the one requested")
	}
	return ans.AccessToken, time.Duration(max(ans.ExpiresIn, 0)) * time.Second, nil
}

// oauthErrorCode reports whether s looks like an OAuth error code
// (invalid_grant...), so a server cannot put arbitrary text in our log.
func oauthErrorCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '-' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// jwtExpiry is a JWT's exp claim, read without verifying it (it only
// shortens how long an exchanged token is cached); zero when tok is not
// a JWT or has none.
func jwtExpiry(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(raw, &claims) != nil || claims.Exp <= 0 {
		return time.Time{}
	}
	return time.Unix(int64(claims.Exp), 0)
}

// tokenCache keeps exchanged tokens by the hash of what was exchanged.
type tokenCache struct {
	mu         sync.Mutex
	max        int
	defaultTTL time.Duration
	entries    map[[32]byte]cachedToken
}

type cachedToken struct {
	token   string
	expires time.Time
}

// tokenCacheMargin is how long before its expiry a cached token is no
// longer handed out, so it does not expire on its way to the backend.
const tokenCacheMargin = 15 * time.Second

func (c *tokenCache) get(k [32]byte, now time.Time) (string, bool) {
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return "", false
	}
	if !now.Add(tokenCacheMargin).Before(e.expires) {
		delete(c.entries, k)
		return "", false
	}
	return e.token, true
}

func (c *tokenCache) put(k [32]byte, tok string, expiresIn time.Duration, subjectExp, now time.Time) {
	if c == nil {
		return
	}
	if expiresIn <= 0 {
		expiresIn = c.defaultTTL
	}
	exp := now.Add(expiresIn)
	if !subjectExp.IsZero() && subjectExp.Before(exp) {
		exp = subjectExp
	}
	if !now.Add(tokenCacheMargin).Before(exp) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for key, e := range c.entries {
			if !now.Add(tokenCacheMargin).Before(e.expires) {
				delete(c.entries, key)
			}
		}
		// Still full: make room by dropping an arbitrary entry (a miss
		// costs one more exchange, never a wrong token).
		for key := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, key)
		}
	}
	c.entries[k] = cachedToken{token: tok, expires: exp}
}
