package fake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options configure a Server. The zero value serves an empty tailnet.
type Options struct {
	// Tailnet is the network the API reports on and acts upon.
	// Nil means an empty MemTailnet.
	Tailnet Tailnet
	// OnPolicyChange, if set, is called after every policy write (through
	// the API or SetPolicy), without the fake's lock held: the sandbox
	// re-sends netmaps from it. It must not block.
	OnPolicyChange func()
	// Logf, if set, receives one line per request (method, path, status)
	// and never a credential.
	Logf func(format string, args ...any)
	// Now is the clock for expiry; nil means time.Now. Tests move it forward
	// to expire tokens and keys.
	Now func() time.Time
	// IssuerHTTP fetches federated identities' OIDC discovery documents
	// and key sets; nil means a client with a 10-second timeout.
	IssuerHTTP *http.Client
}

// TokenOptions describe an API access token minted by NewAPIToken.
type TokenOptions struct {
	// Scopes limit the token like an OAuth token's; nil means full access,
	// like a token an admin creates on the Keys page.
	Scopes []string
	// Expiry is the token's lifetime; zero means 90 days.
	Expiry time.Duration
}

// Server is a fake Tailscale API v2. It implements http.Handler for paths
// under /api/v2/ and is safe for concurrent use.
type Server struct {
	tailnet        Tailnet
	onPolicyChange func()
	logf           func(string, ...any)
	now            func() time.Time
	mux            *http.ServeMux

	mu            sync.Mutex
	policy        []byte // nil until written: the default policy applies
	keys          map[string]*key
	keyOrder      []string
	external      bool
	tailnetLock   bool
	failures      map[string][]failure
	externalLink  string
	oauthTokenTTL time.Duration

	issuerHTTP *http.Client
	issuers    issuerCache
}

type failure struct {
	status  int
	message string
}

// Operations for FailNext.
var operations = []string{
	"policy.get", "policy.set", "policy.validate",
	"settings.get",
	"keys.create_client", "keys.create_federated", "keys.create_authkey", "keys.delete",
	"devices.list", "devices.routes", "devices.delete",
	"oauth.token", "oauth.token_exchange",
}

// New returns a Server with the default policy and no credentials; mint
// one with NewAPIToken.
func New(opts Options) *Server {
	s := &Server{
		tailnet:        opts.Tailnet,
		onPolicyChange: opts.OnPolicyChange,
		logf:           opts.Logf,
		now:            opts.Now,
		keys:           map[string]*key{},
		failures:       map[string][]failure{},
		externalLink:   "https://github.com/example/tailnet-policy",
		oauthTokenTTL:  time.Hour,
		issuerHTTP:     opts.IssuerHTTP,
	}
	if s.issuerHTTP == nil {
		s.issuerHTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if s.tailnet == nil {
		s.tailnet = new(MemTailnet)
	}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	if s.onPolicyChange == nil {
		s.onPolicyChange = func() {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /api/v2/tailnet/{tailnet}/acl", s.authed("policy.get", "policy_file:read", s.getPolicy))
	m.HandleFunc("POST /api/v2/tailnet/{tailnet}/acl", s.authed("policy.set", "policy_file", s.setPolicy))
	m.HandleFunc("POST /api/v2/tailnet/{tailnet}/acl/validate", s.authed("policy.validate", "policy_file:read", s.validatePolicy))
	m.HandleFunc("GET /api/v2/tailnet/{tailnet}/settings", s.authed("settings.get", "feature_settings:read", s.getSettings))
	m.HandleFunc("POST /api/v2/tailnet/{tailnet}/keys", s.authed("", "", s.createKey))
	m.HandleFunc("DELETE /api/v2/tailnet/{tailnet}/keys/{id}", s.authed("keys.delete", "", s.deleteKey))
	m.HandleFunc("GET /api/v2/tailnet/{tailnet}/devices", s.authed("devices.list", "devices:core:read", s.listDevices))
	m.HandleFunc("GET /api/v2/device/{id}/routes", s.authed("devices.routes", "devices:routes:read", s.getRoutes))
	m.HandleFunc("POST /api/v2/device/{id}/routes", s.authed("devices.routes", "devices:routes", s.setRoutes))
	m.HandleFunc("DELETE /api/v2/device/{id}", s.authed("devices.delete", "devices:core", s.deleteDevice))
	m.HandleFunc("POST /api/v2/oauth/token", s.oauthToken)
	m.HandleFunc("POST /api/v2/oauth/token-exchange", s.tokenExchange)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})
	s.mux = m
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.mux.ServeHTTP(rec, r)
	s.logf("fake tsapi: %s %s → %d", r.Method, r.URL.Path, rec.status)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// NewAPIToken mints an API access token "tskey-api-<id>-<secret>".
func (s *Server) NewAPIToken(opts TokenOptions) string {
	exp := opts.Expiry
	if exp == 0 {
		exp = 90 * 24 * time.Hour
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var scopes []string
	if opts.Scopes != nil {
		scopes = slices.Clone(opts.Scopes)
	}
	secret, _ := s.addKeyLocked(KeyInfo{Type: KeyTypeAPI, Scopes: scopes, Expires: s.now().Add(exp), Description: "test API token"}, prefixAPI)
	return secret
}

// SetACLsExternallyManaged sets what GET settings reports as
// aclsExternallyManagedOn: the policy is managed from Git. Like the real
// API, the fake still accepts policy writes; a GitOps sync would later
// overwrite them, which is why callers should warn.
func (s *Server) SetACLsExternallyManaged(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.external = on
}

// SetTailnetLock turns Tailnet Lock on or off. The API v2 settings do not
// expose it, so nothing in the HTTP answers changes; RedeemAuthKey refuses
// keys minted through an OAuth client while it is on, which is how the
// real tailnet behaves (such keys need signing before a node may join).
func (s *Server) SetTailnetLock(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tailnetLock = on
}

// FailNext makes the next request for op fail with status and message,
// once; calling it again queues another failure behind it. op is one of
// "policy.get", "policy.set", "policy.validate", "settings.get",
// "keys.create_client", "keys.create_authkey", "keys.delete",
// "devices.list", "devices.routes", "devices.delete", "oauth.token",
// "keys.create_federated", "oauth.token_exchange".
// The failure applies after authentication succeeded.
//
// For "oauth.token" note that golang.org/x/oauth2 retries a failed
// exchange once with the credentials in the form body (auth style
// auto-detection) until one style has worked: queue two failures to make
// a fresh client's first exchange fail.
func (s *Server) FailNext(op string, status int, message string) {
	if !slices.Contains(operations, op) {
		panic(fmt.Sprintf("fake: FailNext: unknown operation %q (want one of %v)", op, operations))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[op] = append(s.failures[op], failure{status, message})
}

// Policy returns the current policy file as HuJSON.
func (s *Server) Policy() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.policyLocked())
}

// SetPolicy replaces the policy file, as a customer editing it in the
// admin console would. It is not validated, so tests can seed anything.
func (s *Server) SetPolicy(huj []byte) {
	s.mu.Lock()
	s.policy = slices.Clone(huj)
	s.mu.Unlock()
	s.onPolicyChange()
}

// Keys lists every credential issued so far, oldest first, without secrets.
func (s *Server) Keys() []KeyInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]KeyInfo, 0, len(s.keyOrder))
	for _, id := range s.keyOrder {
		k := s.keys[id]
		info := k.KeyInfo
		info.Scopes = slices.Clone(info.Scopes)
		info.Tags = slices.Clone(info.Tags)
		info.Revoked = s.revokedLocked(k)
		out = append(out, info)
	}
	return out
}

// RedeemAuthKey checks an auth key the way control does when a node joins
// with it, and uses it up if it is single-use. The sandbox calls it so that
// a node joins only with a key this API minted; the answer tells the node's
// tags and whether it is ephemeral.
func (s *Server) RedeemAuthKey(secret string) (KeyInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := idFromSecret(prefixAuth, secret)
	k := s.keys[id]
	if !ok || k == nil || k.Type != KeyTypeAuth || !k.secretMatches(secret) {
		return KeyInfo{}, errors.New("invalid auth key")
	}
	switch {
	case s.revokedLocked(k):
		return KeyInfo{}, errors.New("auth key revoked")
	case !s.now().Before(k.Expires):
		return KeyInfo{}, errors.New("auth key expired")
	case k.Used:
		return KeyInfo{}, errors.New("auth key already used")
	case s.tailnetLock && k.ClientID != "":
		return KeyInfo{}, errors.New("tailnet lock is enabled: this auth key is not signed by a trusted tailnet lock key")
	}
	if !k.Reusable {
		k.Used = true
	}
	info := k.KeyInfo
	info.Tags = slices.Clone(info.Tags)
	return info, nil
}

func (s *Server) policyLocked() []byte {
	if s.policy == nil {
		return []byte(defaultPolicy)
	}
	return s.policy
}

func (s *Server) revokedLocked(k *key) bool {
	if !k.revokedAt.IsZero() {
		return true
	}
	if k.ClientID != "" {
		if c := s.keys[k.ClientID]; c != nil && !c.revokedAt.IsZero() {
			return true
		}
	}
	return false
}

func (s *Server) addKeyLocked(info KeyInfo, prefix string) (secret string, k *key) {
	info.ID = newID()
	info.Created = s.now()
	secret = newSecret(prefix, info.ID)
	k = &key{KeyInfo: info, secretHash: hashSecret(secret)}
	s.keys[info.ID] = k
	s.keyOrder = append(s.keyOrder, info.ID)
	return secret, k
}

// caller is the credential a request authenticated with.
type caller struct {
	key *key
}

// scopes returns the caller's scopes; nil means full access.
func (c caller) scopes() []string { return c.key.Scopes }

// fromOAuth reports whether the caller's token was minted by an OAuth
// client (rather than created by a user), which limits the tags it may use.
func (c caller) fromOAuth() bool { return c.key.ClientID != "" }

// authenticate finds the API token of r: the Basic username, or a Bearer token.
func (s *Server) authenticate(r *http.Request) (caller, int, string) {
	tok := ""
	if user, _, ok := r.BasicAuth(); ok {
		tok = user
	} else if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		tok = strings.TrimSpace(b)
	}
	if tok == "" {
		return caller{}, http.StatusUnauthorized, "API token required"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := idFromSecret(prefixAPI, tok)
	k := s.keys[id]
	if !ok || k == nil || k.Type != KeyTypeAPI || !k.secretMatches(tok) {
		return caller{}, http.StatusUnauthorized, "API token invalid"
	}
	if s.revokedLocked(k) {
		return caller{}, http.StatusUnauthorized, "API token invalid: revoked"
	}
	if !s.now().Before(k.Expires) {
		return caller{}, http.StatusUnauthorized, "API token invalid: expired"
	}
	return caller{key: k}, 0, ""
}

type handler func(w http.ResponseWriter, r *http.Request, c caller)

// authed wraps h with authentication, a scope check (scope "" means the
// handler checks itself) and one-shot failure injection for op.
func (s *Server) authed(op, scope string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, status, msg := s.authenticate(r)
		if status != 0 {
			writeError(w, status, msg)
			return
		}
		if scope != "" && !hasScope(c.scopes(), scope) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("calling actor does not have enough permissions to perform this function: needs scope %q", scope))
			return
		}
		if op != "" && s.injected(w, op) {
			return
		}
		h(w, r, c)
	}
}

// injected answers with a failure queued by FailNext for op, if any.
func (s *Server) injected(w http.ResponseWriter, op string) bool {
	s.mu.Lock()
	f, ok := s.popFailureLocked(op)
	s.mu.Unlock()
	if ok {
		writeError(w, f.status, f.message)
	}
	return ok
}

func (s *Server) popFailureLocked(op string) (failure, bool) {
	q := s.failures[op]
	if len(q) == 0 {
		return failure{}, false
	}
	s.failures[op] = q[1:]
	return q[0], true
}

// maxBody bounds request bodies; policy files are far smaller.
const maxBody = 4 << 20

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return nil, false
	}
	return b, true
}

// writeError is the one error writer: {"message": ...} like the real API.
func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]any{"message": message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	ext, link := s.external, ""
	if ext {
		link = s.externalLink
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"aclsExternallyManagedOn":                ext,
		"aclsExternalLink":                       link,
		"devicesApprovalOn":                      false,
		"devicesAutoUpdatesOn":                   false,
		"devicesKeyDurationDays":                 180,
		"usersApprovalOn":                        false,
		"usersRoleAllowedToJoinExternalTailnets": "none",
		"networkFlowLoggingOn":                   false,
		"regionalRoutingOn":                      false,
		"postureIdentityCollectionOn":            false,
		"httpsEnabled":                           false,
	})
}

// oauthToken is the client-credentials exchange. Credentials come as Basic
// auth or form fields (golang.org/x/oauth2 tries both).
func (s *Server) oauthToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		// RFC 6749 2.3.1: Basic credentials are form-encoded first.
		id, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[id]
	if k == nil || k.Type != KeyTypeClient || !k.secretMatches(secret) || s.revokedLocked(k) {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "invalid client credentials")
		return
	}
	if f, ok := s.popFailureLocked("oauth.token"); ok {
		writeError(w, f.status, f.message)
		return
	}
	scopes := k.Scopes
	if req := strings.Fields(r.PostForm.Get("scope")); len(req) > 0 {
		for _, sc := range req {
			if !hasScope(k.Scopes, sc) {
				writeOAuthError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q is not granted to this client", sc))
				return
			}
		}
		scopes = req
	}
	s.writeAccessTokenLocked(w, k.ID, scopes, "OAuth access token")
}

// writeAccessTokenLocked mints a 1-hour API token for a trust credential
// (an OAuth client or a federated identity) and answers with it.
func (s *Server) writeAccessTokenLocked(w http.ResponseWriter, clientID string, scopes []string, description string) {
	tok, _ := s.addKeyLocked(KeyInfo{
		Type:        KeyTypeAPI,
		Scopes:      slices.Clone(scopes),
		ClientID:    clientID,
		Expires:     s.now().Add(s.oauthTokenTTL),
		Description: description,
	}, prefixAPI)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(s.oauthTokenTTL / time.Second),
		"scope":        strings.Join(scopes, " "),
	})
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc, "message": desc})
}
