package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	apidoc "github.com/tailgate-dev/tailgate/api"
	"github.com/tailgate-dev/tailgate/internal/allowlist"
	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/issuer"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/yamljson"
)

// PrivateNetwork runs the three moments of private network access for the
// API. *connect.Service implements it; tests use a fake.
type PrivateNetwork interface {
	Connect(ctx context.Context, req connect.Request) (connect.Result, error)
	Status(ctx context.Context, orgID, envName string) (connect.Status, error)
	Verify(ctx context.Context, orgID, envName string) (connect.Verification, error)
	Disconnect(ctx context.Context, orgID, envName, apiToken string) error
}

var _ PrivateNetwork = (*connect.Service)(nil)

// Options configure the API. Store and PrivateNetwork are required.
type Options struct {
	// Store keeps orgs, tokens and environments.
	Store *store.Store
	// PrivateNetwork connects, verifies and disconnects environments.
	PrivateNetwork PrivateNetwork
	// Logger receives one line per request (method, path, status,
	// duration, org) and the causes of server errors; never a body or a
	// secret. Nil discards.
	Logger *slog.Logger
	// OperationTimeout bounds connect, verify and disconnect, which talk
	// to Tailscale and may join the tailnet; 3 minutes when zero.
	OperationTimeout time.Duration
	// Runs starts and ends runs (a *run.Manager). Nil: the run endpoints
	// answer 503 runs_unavailable.
	Runs Runs
	// RunLease is the run manager's lease, told to clients in every open
	// run (lease_seconds) so they heartbeat in time. Zero: not told.
	RunLease time.Duration
	// Issuer, when set (serve --public-url), is served publicly: its OIDC
	// discovery document and key set, under the public URL's path, which
	// Tailscale fetches to check the ID tokens of federated identities.
	Issuer *issuer.Issuer
	// Allowlist publishes the Network Allowlist (/v1/network/...). Nil:
	// those endpoints answer 503 allowlist_unavailable.
	Allowlist *allowlist.Service
	// AllowlistNeedsToken makes GET /v1/network/allowlist and its change
	// feed need a token of any org, like every other endpoint; by default
	// they are public (a firewall's automation has no tailgate token).
	AllowlistNeedsToken bool
}

// server is the API's state; handlers are its methods.
type server struct {
	store     *store.Store
	pn        PrivateNetwork
	runs      Runs
	runLease  time.Duration
	issuer    *issuer.Issuer
	log       *slog.Logger
	opTimeout time.Duration
	allowlist *allowlist.Service
	// allowlistAccess is who may read the allowlist and its feed.
	allowlistAccess access
}

// New returns the API as one handler: /v1/..., /healthz, /readyz and 404/405 for
// everything else, all answered in JSON.
func New(opts Options) http.Handler {
	s := &server{store: opts.Store, pn: opts.PrivateNetwork, runs: opts.Runs, runLease: opts.RunLease, issuer: opts.Issuer, log: opts.Logger, opTimeout: opts.OperationTimeout,
		allowlist: opts.Allowlist, allowlistAccess: public}
	if opts.AllowlistNeedsToken {
		s.allowlistAccess = anyRole
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.opTimeout == 0 {
		s.opTimeout = 3 * time.Minute
	}
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, s.dispatch(rt))
	}
	// Every other path needs a token too: without one it answers 401, so
	// probing paths tells nothing about which exist.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.authenticate(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeError(w, r, apiErr(errcode.NotFound, "no such endpoint: %s (see /v1/openapi.json)", pathForMessage(r.URL.Path)))
	})
	return s.accessLog(s.recoverPanics(s.canonicalPaths(mux)))
}

// canonicalPaths answers a path that is not in canonical form ("//",
// "/./", "/../", or none at all) itself, in JSON and after
// authentication, instead of letting http.ServeMux redirect it with an
// HTML 307 before any token is checked. It does not serve the cleaned
// path: a client that sends one path and reaches another is a bug to
// show, not to hide.
func (s *server) canonicalPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p != "" && p == cleanPath(p) {
			next.ServeHTTP(w, r)
			return
		}
		if _, err := s.authenticate(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeError(w, r, apiErr(errcode.NotFound, "no such endpoint: %s is not a canonical path (no empty, \".\" or \"..\" segments); did you mean %s?",
			pathForMessage(p), pathForMessage(cleanPath(p))))
	})
}

// cleanPath is the canonical form http.ServeMux redirects to: rooted,
// no empty, "." or ".." segments, a trailing slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// access says who may call an endpoint.
type access int

const (
	public    access = iota // no token needed
	anyRole                 // any valid token of the org
	adminOnly               // a token with role admin
)

// endpoint is one method on one path.
type endpoint struct {
	access access
	handle func(w http.ResponseWriter, r *http.Request, p store.Principal) error
}

// route is one path and the methods it answers.
type route struct {
	pattern string
	methods map[string]endpoint
}

func (s *server) routes() []route {
	return append(s.issuerRoutes(), []route{
		{"/healthz", map[string]endpoint{
			http.MethodGet: {public, s.healthz},
		}},
		{"/readyz", map[string]endpoint{
			http.MethodGet: {public, s.readyz},
		}},
		{"/v1/openapi.json", map[string]endpoint{
			http.MethodGet: {public, s.openAPI},
		}},
		{"/v1/environments", map[string]endpoint{
			http.MethodPost: {adminOnly, s.createEnvironment},
			http.MethodGet:  {anyRole, s.listEnvironments},
		}},
		{"/v1/environments/{env}", map[string]endpoint{
			http.MethodGet:    {anyRole, s.getEnvironment},
			http.MethodDelete: {adminOnly, s.deleteEnvironment},
		}},
		{"/v1/environments/{env}/private-network", map[string]endpoint{
			http.MethodPut:    {adminOnly, s.connect},
			http.MethodGet:    {anyRole, s.status},
			http.MethodDelete: {adminOnly, s.disconnect},
		}},
		{"/v1/environments/{env}/private-network/verify", map[string]endpoint{
			http.MethodPost: {adminOnly, s.verify},
		}},
		{"/v1/environments/{env}/runs", map[string]endpoint{
			http.MethodPost: {anyRole, s.startRun},
		}},
		{"/v1/runs", map[string]endpoint{
			http.MethodGet: {anyRole, s.listRuns},
		}},
		{"/v1/runs/{id}", map[string]endpoint{
			http.MethodGet:    {anyRole, s.getRun},
			http.MethodDelete: {anyRole, s.endRun},
		}},
		{"/v1/runs/{id}/heartbeat", map[string]endpoint{
			http.MethodPost: {anyRole, s.heartbeatRun},
		}},
		{"/v1/runs/{id}/relay", map[string]endpoint{
			http.MethodGet: {anyRole, s.relayRun},
		}},
		{"/v1/tokens", map[string]endpoint{
			http.MethodPost: {adminOnly, s.createToken},
			http.MethodGet:  {adminOnly, s.listTokens},
		}},
		{"/v1/tokens/{id}", map[string]endpoint{
			http.MethodDelete: {adminOnly, s.revokeToken},
		}},
		{"/v1/network/allowlist", map[string]endpoint{
			http.MethodGet: {s.allowlistAccess, s.getAllowlist},
		}},
		{"/v1/network/allowlist/changes", map[string]endpoint{
			http.MethodGet: {s.allowlistAccess, s.allowlistChanges},
		}},
		{"/v1/network/allowlist/webhook", map[string]endpoint{
			http.MethodPut:    {adminOnly, s.setWebhook},
			http.MethodGet:    {adminOnly, s.getWebhook},
			http.MethodDelete: {adminOnly, s.deleteWebhook},
		}},
		{"/v1/network/egress", map[string]endpoint{
			http.MethodPost: {anyRole, s.reportEgress},
		}},
		{"/v1/network/egress/{ip}", map[string]endpoint{
			http.MethodDelete: {anyRole, s.retireEgress},
		}},
	}...)
}

// issuerRoutes are the OIDC issuer's public documents, if tailgate is one.
func (s *server) issuerRoutes() []route {
	if s.issuer == nil {
		return nil
	}
	h := s.issuer.Handler()
	serve := endpoint{public, func(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
		h.ServeHTTP(w, r)
		return nil
	}}
	return []route{
		{s.issuer.Path() + issuer.DiscoveryPath, map[string]endpoint{http.MethodGet: serve}},
		{s.issuer.Path() + issuer.JWKSPath, map[string]endpoint{http.MethodGet: serve}},
	}
}

// dispatch checks, in order, the token (401), the method (405) and the
// role (403), then runs the endpoint and writes any error it returns.
func (s *server) dispatch(rt route) http.Handler {
	allow := make([]string, 0, len(rt.methods))
	isPublic := true
	for m, ep := range rt.methods {
		allow = append(allow, m)
		if ep.access != public {
			isPublic = false
		}
	}
	if _, ok := rt.methods[http.MethodGet]; ok {
		allow = append(allow, http.MethodHead)
	}
	slices.Sort(allow)
	allowHeader := strings.Join(allow, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p store.Principal
		if !isPublic {
			var err error
			if p, err = s.authenticate(r); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		ep, ok := rt.methods[method]
		if !ok {
			e := apiErr(errcode.MethodNotAllowed, "%s is not allowed here; allowed: %s", r.Method, allowHeader)
			e.allow = allowHeader
			s.writeError(w, r, e)
			return
		}
		if ep.access == adminOnly && p.Role != store.RoleAdmin {
			s.writeError(w, r, apiErr(errcode.Forbidden, "this needs a token with role admin; this token's role is %s", p.Role))
			return
		}
		if err := ep.handle(w, r, p); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// authenticate finds the principal of the request's bearer token and
// notes it for the access log.
func (s *server) authenticate(r *http.Request) (store.Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return store.Principal{}, apiErr(errcode.Unauthenticated, "missing Authorization header; send a tailgate API token as \"Authorization: Bearer tg_...\"")
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return store.Principal{}, apiErr(errcode.Unauthenticated, "the Authorization header must be \"Bearer tg_...\"")
	}
	p, err := s.store.Authenticate(r.Context(), strings.TrimSpace(token))
	if err != nil {
		if errors.Is(err, store.ErrUnauthenticated) {
			return store.Principal{}, apiErr(errcode.Unauthenticated, "the tailgate API token is unknown or revoked")
		}
		return store.Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	if info := requestInfoFrom(r.Context()); info != nil {
		info.orgID, info.tokenID = p.OrgID, p.TokenID
	}
	return p, nil
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

var openAPIJSON = sync.OnceValues(func() ([]byte, error) {
	doc, err := yamljson.Decode(apidoc.OpenAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("parse api/openapi.yaml: %w", err)
	}
	return json.MarshalIndent(doc, "", "  ")
})

// OpenAPI returns the API's OpenAPI 3.0 document as JSON, as served at
// /v1/openapi.json.
func OpenAPI() ([]byte, error) { return openAPIJSON() }

func (s *server) openAPI(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	doc, err := openAPIJSON()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(doc)
	return nil
}

// pathForMessage keeps an unknown path short and free of credentials
// before it is echoed in a 404.
func pathForMessage(p string) string {
	if len(p) > 100 {
		p = p[:100] + "..."
	}
	return redact(strings.ToValidUTF8(p, "?"))
}

// requestInfo collects, while a request is handled, what the access log
// line says about it.
type requestInfo struct {
	orgID, tokenID string
}

type requestInfoKey struct{}

func requestInfoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

// accessLog writes one line per request: method, path, status, duration,
// and the org and token id once authenticated. Never a body, a query
// string or a header value.
func (s *server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{}
		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", pathForMessage(r.URL.Path)),
			slog.Int("status", sw.status),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		}
		if info.orgID != "" {
			attrs = append(attrs, slog.String("org", info.orgID), slog.String("token_id", info.tokenID))
		}
		level := slog.LevelInfo
		if sw.status >= 500 {
			level = slog.LevelError
		}
		s.log.LogAttrs(r.Context(), level, "request", attrs...)
	})
}

// recoverPanics answers a handler panic with a 500 instead of a dropped
// connection, and logs it (redacted).
func (s *server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.writeError(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// statusWriter remembers the status code for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
