package httppolicy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/expiring"
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
// crossAppAccess is the same exchange twice: RFC 8693 at the identity
// provider for an ID-JAG (requested_token_type id-jag; the answer must say
// issued_token_type id-jag and token_type N_A), then RFC 7523 at the
// resource's authorization server with the ID-JAG as assertion; a refusal
// at that second step is the gateway's failure (500), not the caller's.
// The subject token is read from a header (default Authorization, less
// "Bearer ") or a CEL expression (jwt.rawToken.unredacted()).
//
// Neither token nor the client secret is ever logged or returned: access
// log reasons name the failure and, at most, the server's status and
// OAuth error code.
type TokenExchange struct {
	endpoint           tokenEndpoint
	jwtBearer          bool
	subject            tokenSource
	subjectTokenType   string
	audiences          []string
	scopes             []string
	resources          []string
	requestedTokenType string
	params             []tokenParam
	// chain, for crossAppAccess, trades the first answer (an ID-JAG) at
	// a second endpoint for the access token.
	chain  *chainedExchange
	cache  *tokenCache
	client *http.Client
	now    func() time.Time
}

// tokenEndpoint is a token endpoint and how the gateway authenticates
// to it.
type tokenEndpoint struct {
	url              string
	hasClientAuth    bool
	clientID         string
	clientSecret     string
	clientSecretPost bool
}

// chainedExchange is crossAppAccess's second step: RFC 7523 jwt-bearer
// with the ID-JAG as assertion.
type chainedExchange struct {
	endpoint tokenEndpoint
	scopes   []string
}

// tokenSource is where the subject token is read: a header less a
// prefix (default Authorization, "Bearer ") or a CEL expression.
type tokenSource struct {
	header string
	prefix string
	expr   *cel.Expression
}

type tokenParam struct {
	name string
	expr *cel.Expression
}

// tokenEndpointTimeout bounds one call to the token endpoint (as
// agentgateway's 10 s).
const tokenEndpointTimeout = 10 * time.Second

func compileTokenExchange(t *config.OAuthTokenExchange, path string, c Compiler) Policy {
	ep, ok := compileTokenEndpoint(t.Pos, t.Host, t.Path, t.ClientAuth, path, c)
	if !ok {
		return nil
	}
	out := &TokenExchange{
		endpoint:           ep,
		jwtBearer:          t.GrantType == "jwtBearer",
		subjectTokenType:   config.TokenTypeAccess,
		audiences:          t.Audiences,
		scopes:             t.Scopes,
		resources:          t.Resources,
		requestedTokenType: t.RequestedTokenType,
		client:             c.HTTPClient(),
		now:                time.Now,
	}
	out.subject, out.subjectTokenType = compileSubject(t.SubjectToken, config.TokenTypeAccess, path+".subjectToken", c)
	for _, p := range t.AdditionalParams {
		out.params = append(out.params, tokenParam{p.Name, c.Expression(cel.Request, p.Pos, path+".additionalParams."+p.Name, p.Expr)})
	}
	out.cache = newTokenCache(t.Cache)
	return out
}

// compileCrossAppAccess is crossAppAccess as a TokenExchange: RFC 8693 at
// the identity provider for an ID-JAG (subject: the caller's ID token),
// chained to jwt-bearer at the resource's authorization server.
func compileCrossAppAccess(x *config.CrossAppAccess, path string, c Compiler) Policy {
	idp, resource := x.IdentityProvider, x.ResourceAuthorizationServer
	first, ok1 := compileTokenEndpoint(idp.Pos, idp.Host, idp.Path, idp.ClientAuth, path+".identityProvider", c)
	second, ok2 := compileTokenEndpoint(resource.Pos, resource.Host, resource.Path, resource.ClientAuth, path+".resourceAuthorizationServer", c)
	if !ok1 || !ok2 {
		return nil
	}
	chainScopes := x.Scopes
	if x.AccessTokenScopes != nil {
		chainScopes = *x.AccessTokenScopes
	}
	out := &TokenExchange{
		endpoint:           first,
		audiences:          []string{x.Audience},
		scopes:             x.Scopes,
		resources:          x.Resources,
		requestedTokenType: config.TokenTypeIDJAG,
		chain:              &chainedExchange{endpoint: second, scopes: chainScopes},
		client:             c.HTTPClient(),
		now:                time.Now,
	}
	out.subject, out.subjectTokenType = compileSubject(x.SubjectToken, config.TokenTypeID, path+".subjectToken", c)
	out.cache = newTokenCache(x.Cache)
	return out
}

func compileTokenEndpoint(pos config.Pos, host, p string, auth *config.OAuthClientAuth, path string, c Compiler) (tokenEndpoint, bool) {
	raw := host
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		c.Fail(pos, path+".host", fmt.Errorf("want host:port or an http(s) URL, got %q", host))
		return tokenEndpoint{}, false
	}
	u.Path = p
	if u.Path == "" {
		u.Path = "/"
	}
	ep := tokenEndpoint{url: u.String()}
	if auth != nil {
		ep.hasClientAuth, ep.clientID = true, auth.ClientID
		ep.clientSecretPost = auth.Method == "clientSecretPost"
		if auth.ClientSecret != nil {
			secret, err := readFileOrInline(auth.ClientSecret, c.Rel)
			if err != nil {
				c.Fail(auth.ClientSecret.Pos, path+".clientAuth.clientSecret", err)
				return tokenEndpoint{}, false
			}
			ep.clientSecret = strings.TrimSpace(secret)
		}
	}
	return ep, true
}

// compileSubject is where the subject token is read, and its type.
func compileSubject(s *config.TokenExchangeToken, defType, path string, c Compiler) (tokenSource, string) {
	src, typ := tokenSource{header: "Authorization", prefix: "Bearer "}, defType
	if s == nil {
		return src, typ
	}
	if s.TokenType != "" {
		typ = s.TokenType
	}
	switch so := s.Source; {
	case so == nil:
	case so.Header != nil:
		src = tokenSource{header: so.Header.Name}
		if so.Header.Prefix != nil {
			src.prefix = *so.Header.Prefix
		}
	default:
		src = tokenSource{expr: c.Expression(cel.Request, so.Pos, path+".source.expression", so.Expression)}
	}
	return src, typ
}

// newTokenCache is the cache of exchanged tokens: maxEntries (default
// 8192, 0 for none) and the lifetime of an answer without expires_in
// (default 5m).
func newTokenCache(cc *config.TokenCacheLimit) *tokenCache {
	maxEntries, ttl := 8192, 5*time.Minute
	if cc != nil {
		if cc.MaxEntries != nil {
			maxEntries = *cc.MaxEntries
		}
		if cc.DefaultTTL.D > 0 {
			ttl = cc.DefaultTTL.D
		}
	}
	if maxEntries <= 0 {
		return nil
	}
	return &tokenCache{defaultTTL: ttl, tokens: expiring.New[[32]byte, string](maxEntries)}
}

// read is the subject token of r, "" when it has none.
func (s tokenSource) read(r *http.Request, x Exchange) string {
	if s.expr != nil {
		v, err := s.expr.EvalString(x.Vars())
		if err != nil {
			return ""
		}
		return strings.TrimSpace(v)
	}
	if s.expr == nil && s.header == "" {
		return "" // the expression did not compile; the load failed
	}
	h := r.Header.Get(s.header)
	if len(h) < len(s.prefix) || !strings.EqualFold(h[:len(s.prefix)], s.prefix) {
		return ""
	}
	return strings.TrimSpace(h[len(s.prefix):])
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
	if t.subject.header != "" {
		r.Header.Del(t.subject.header) // the caller's credential stays here
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	return true
}

func (t *TokenExchange) exchange(r *http.Request, x Exchange) (string, error) {
	subject := t.subject.read(r, x)
	if subject == "" {
		return "", refused("token exchange: the request has no subject token")
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
	ans, err := t.endpoint.post(r.Context(), t.client, form)
	if err != nil {
		return "", err
	}
	if t.requestedTokenType == config.TokenTypeIDJAG {
		err = ans.checkIDJAG()
	} else {
		err = ans.checkBearer(t.requestedTokenType)
	}
	if err != nil {
		return "", err
	}
	tok, expiresIn := ans.AccessToken, time.Duration(max(ans.ExpiresIn, 0))*time.Second
	if c := t.chain; c != nil {
		form := url.Values{
			"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
			"assertion":  {tok},
		}
		if len(c.scopes) > 0 {
			form.Set("scope", strings.Join(c.scopes, " "))
		}
		ans, err := c.endpoint.post(r.Context(), t.client, form)
		if err != nil {
			// The resource server refusing the ID-JAG is not the caller's
			// fault (as agentgateway): 500, not 400.
			var ee *exchangeError
			if errors.As(err, &ee) {
				return "", failed("chained " + ee.reason)
			}
			return "", err
		}
		if err := ans.checkBearer(""); err != nil {
			return "", err
		}
		tok, expiresIn = ans.AccessToken, time.Duration(max(ans.ExpiresIn, 0))*time.Second
	}
	t.cache.put(key, tok, expiresIn, jwtExpiry(subject), t.now())
	return tok, nil
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

// post sends form to the endpoint and returns its 2xx JSON answer; an
// error answer is refused (400) when it is a 4xx other than 401/403 —
// the caller's token was refused — and failed (500) otherwise.
func (ep tokenEndpoint) post(ctx context.Context, client *http.Client, form url.Values) (*tokenAnswer, error) {
	if ep.hasClientAuth && ep.clientSecretPost {
		form.Set("client_id", ep.clientID)
		if ep.clientSecret != "" {
			form.Set("client_secret", ep.clientSecret)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, tokenEndpointTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, failed("token exchange: bad token endpoint")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if ep.hasClientAuth && !ep.clientSecretPost {
		// RFC 6749 §2.3.1: both parts form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(ep.clientID), url.QueryEscape(ep.clientSecret))
	}
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
		return nil, failed("token exchange: token endpoint unreachable: " + err.Error())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, failed("token exchange: reading the token endpoint's answer failed")
	}
	ans := &tokenAnswer{}
	jsonErr := json.Unmarshal(body, ans)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		reason := fmt.Sprintf("token exchange: token endpoint answered %d", resp.StatusCode)
		if jsonErr == nil && oauthErrorCode(ans.Error) {
			reason += " " + ans.Error
		}
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != 401 && resp.StatusCode != 403 {
			return nil, refused(reason)
		}
		return nil, failed(reason)
	}
	if jsonErr != nil {
		return nil, failed("token exchange: the token endpoint's answer is not JSON")
	}
	if ans.AccessToken == "" {
		return nil, failed("token exchange: the answer has no access_token")
	}
	return ans, nil
}

// checkBearer accepts an access token: token_type Bearer and, when a
// type was requested and the answer names one, that type.
func (a *tokenAnswer) checkBearer(requested string) error {
	switch {
	case !strings.EqualFold(a.TokenType, "Bearer"):
		return failed("token exchange: the answer's token_type is not Bearer")
	case requested != "" && a.IssuedTokenType != "" && a.IssuedTokenType != requested:
		return failed("token exchange: the answer's issued_token_type is not the one requested")
	}
	return nil
}

// checkIDJAG accepts an ID-JAG: issued_token_type id-jag, token_type
// N_A or absent.
func (a *tokenAnswer) checkIDJAG() error {
	switch {
	case a.IssuedTokenType != config.TokenTypeIDJAG:
		return failed("token exchange: the identity provider did not issue an ID-JAG")
	case a.TokenType != "" && !strings.EqualFold(a.TokenType, "N_A"):
		return failed("token exchange: the ID-JAG's token_type is not N_A")
	}
	return nil
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
	var claims struct {
		Exp float64 `json:"exp"`
	}
	if len(parts) != 3 || decodeSegment(parts[1], &claims) != nil || claims.Exp <= 0 {
		return time.Time{}
	}
	return time.Unix(int64(claims.Exp), 0)
}

// tokenCache keeps exchanged tokens by the hash of what was exchanged.
type tokenCache struct {
	defaultTTL time.Duration
	tokens     *expiring.Cache[[32]byte, string]
}

// tokenCacheMargin is how long before its expiry a cached token is no
// longer handed out, so it does not expire on its way to the backend.
const tokenCacheMargin = 15 * time.Second

func (c *tokenCache) get(k [32]byte, now time.Time) (string, bool) {
	if c == nil {
		return "", false
	}
	return c.tokens.Get(k, now.Add(tokenCacheMargin))
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
	c.tokens.Put(k, tok, exp, now.Add(tokenCacheMargin))
}
