package httppolicy

import (
	"crypto/tls"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
	"github.com/tailgate-dev/tailgate/internal/gateway/spiffe"
)

// modules are every policy key a listener or route can set: one line a
// policy. Their order here does not matter; Phase decides when each runs.
var modules = []Module{
	localRateLimit,
	remoteRateLimit,
	cors,
	jwtAuth,
	extAuthz,
	authorization,
	requestHeaderModifier,
	transformations,
	responseHeaderModifier,
	timeout,
	directResponse,
	requestRedirect,
	urlRewrite,
	requestMirror,
	delay,
	retry,
	backendTLS,
	backendAuth,
	mcpAuthentication,
	oidc,
	a2a,
}

// inPhaseOrder is modules sorted by Phase, once.
var inPhaseOrder = func() []Module {
	ms := append([]Module(nil), modules...)
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Phase < ms[j].Phase })
	return ms
}()

// Phase is when a policy runs; a Set runs its policies in Phase order.
type Phase int

const (
	// RateLimiting refuses before anything costs work (localRateLimit).
	RateLimiting Phase = iota + 1
	// CrossOrigin answers preflights before authentication (cors).
	CrossOrigin
	// Authentication verifies who is calling; sets jwt.* (jwtAuth).
	Authentication
	// ExternalAuthorization asks a service; sets extauthz.* (extAuthz).
	ExternalAuthorization
	// MCPAuthentication serves protected-resource metadata and refuses
	// MCP callers without a valid token (mcpAuthentication); it runs
	// with the other authentication, before any rule.
	// Authorization decides with rules over everything above.
	Authorization
	// GlobalRateLimiting asks a rate-limit service shared by every
	// replica (remoteRateLimit); after authorization, as in agentgateway,
	// so its descriptors may use jwt.* and extauthz.*.
	GlobalRateLimiting
	// Respond answers the request without a backend (directResponse,
	// requestRedirect).
	Respond
	// RequestRewrite changes the request sent to the backend.
	RequestRewrite
	// ResponseRewrite changes the response's headers.
	ResponseRewrite
	// Forward is last before the backend: mirror the request as it will
	// be sent, inject delays (requestMirror, delay).
	Forward
	// RouteSetting is a policy that configures its route instead of
	// running on requests (timeout).
	RouteSetting
)

// Policy is one compiled policy, safe for concurrent use.
type Policy interface {
	// Run applies the policy to one request. It returns false when it has
	// answered the request itself (refused it, answered a preflight), and
	// the request must go no further.
	Run(w http.ResponseWriter, r *http.Request, x Exchange) bool
}

// Exchange is the gateway's side of one request: what policies read and
// where they report what they decided.
type Exchange interface {
	// Vars are the request's CEL variables (request.*, source.*, jwt.*,
	// extauthz.*), built on first use.
	Vars() cel.Vars
	// Refuse records that policy refused the request for reason (access
	// log, metric). The policy writes the answer; see Deny.
	Refuse(policy, reason string)
	// Note records a reason in the access log without refusing.
	Note(reason string)
	// Authenticated hands over a verified token's claims (jwt.*).
	Authenticated(claims map[string]any)
	// Authorized hands over an authorization service's metadata
	// (extauthz.*).
	Authorized(metadata map[string]any)
	// ModifyResponse applies m to the response's headers when they are
	// written, after the changes asked for before it.
	ModifyResponse(m *HeaderModifier)
	// PathPrefix is the pathPrefix of the route match that chose the
	// request, "" for other matches (urlRewrite and requestRedirect
	// replace it).
	PathPrefix() string
	// UseBackendHost sends the backend's host:port as Host instead of
	// the caller's (urlRewrite authority: auto).
	UseBackendHost()
	// BearerToken is the token the caller authenticated with, if any.
	BearerToken() string
}

// Deny refuses the request with status and a short text body.
func Deny(w http.ResponseWriter, x Exchange, policy, reason string, status int, body string) {
	x.Refuse(policy, reason)
	http.Error(w, body, status)
}

// Compiler is the gateway's config compiler as a module sees it: where
// relative files are, which HTTP client to use, and where problems go.
// Every problem is reported, not returned, so one load lists them all.
type Compiler interface {
	// Fail reports a problem at p (path is the YAML path).
	Fail(p config.Pos, path string, err error)
	// Rules compiles a rule set in phase, reporting errors and warnings.
	Rules(phase cel.Phase, rs *config.RuleSet, path string) *cel.Set
	// Expression compiles one CEL value in phase, reporting its error.
	Expression(phase cel.Phase, p config.Pos, path, src string) *cel.Expression
	// Rel resolves a path named in the config file.
	Rel(path string) string
	// HTTPClient is for JWKS URLs and authorization services.
	HTTPClient() *http.Client
	// JWKSRefetchInterval is the least time between JWKS refetches.
	JWKSRefetchInterval() time.Duration
	// Own hands over something a policy holds open (a gRPC connection);
	// it is closed when the compiled config is replaced or discarded.
	Own(io.Closer)
	// Spiffe is the gateway's SPIFFE identity (backendTLS.spiffe).
	Spiffe() *spiffe.Workload
}

// Module is one policy key of a `policies:` block.
type Module struct {
	// Key is the config key, e.g. "cors".
	Key string
	// Phase is when the compiled policy runs.
	Phase Phase
	// compile builds the policy from its block (path is the block's YAML
	// path), or returns nil when the block does not set Key or the config
	// is wrong (then it has reported why).
	compile func(p *config.RoutePolicies, path string, c Compiler) Policy
}

// module declares a Module whose config is the field key picks out of a
// policies block; compile sees only a block that is set.
func module[C any](key string, phase Phase, pick func(*config.RoutePolicies) *C, compile func(cfg *C, path string, c Compiler) Policy) Module {
	return Module{Key: key, Phase: phase, compile: func(p *config.RoutePolicies, path string, c Compiler) Policy {
		cfg := pick(p)
		if cfg == nil {
			return nil
		}
		return compile(cfg, path+"."+key, c)
	}}
}

// blockModule declares a Module whose block type C is declared with the
// policy (not in gateway/config): it registers key with config, which
// decodes the block as strictly as its own keys, and compile sees a
// block that is set. level says where the key may be written.
func blockModule[C any](key string, phase Phase, level config.Level, compile func(cfg *C, path string, c Compiler) Policy) Module {
	config.RegisterPolicy[C](key, level)
	return module(key, phase, func(p *config.RoutePolicies) *C { return config.Block[C](p.Blocks, key) }, compile)
}

// routeSetting is implemented by the policies of phase RouteSetting.
type routeSetting interface {
	configure(s *Set)
}

// Set is the compiled policies of one listener or route.
type Set struct {
	run []Policy // in Phase order
	// runKeys and runPhases are run's config keys and phases (Overlay).
	runKeys   []string
	runPhases []Phase
	// keys are the config keys of every policy in the set, in Phase order.
	keys []string
	// RequestTimeout bounds the whole request (policies and backend) and
	// BackendTimeout the backend's part; 0 for none (timeout).
	RequestTimeout time.Duration
	BackendTimeout time.Duration
	// Retry resends failed backend requests (retry); nil for none.
	Retry *RetrySpec
	// BackendTLS is the TLS the route's host backends are reached with
	// (backendTLS); nil for the backend URL's own scheme.
	BackendTLS *tls.Config
	// A2A marks the route's traffic as Agent2Agent (a2a).
	A2A bool
}

// Compile compiles a policies block; path is its YAML path. A listener's
// block is given as RoutePolicies{GatewayPolicies: *l.Policies}.
func Compile(p *config.RoutePolicies, path string, c Compiler) *Set {
	s := &Set{}
	for _, m := range inPhaseOrder {
		pol := m.compile(p, path, c)
		if pol == nil {
			continue
		}
		s.keys = append(s.keys, m.Key)
		if rs, ok := pol.(routeSetting); ok {
			rs.configure(s)
			continue
		}
		s.run = append(s.run, pol)
		s.runKeys = append(s.runKeys, m.Key)
		s.runPhases = append(s.runPhases, m.Phase)
	}
	return s
}

// Keys are the config keys of s's policies (those that run on requests
// and those that configure the route, like timeout), in the order they
// apply.
func (s *Set) Keys() []string {
	if s == nil {
		return nil
	}
	return s.keys
}

// Empty reports whether s has no policy to run on requests.
func (s *Set) Empty() bool { return s == nil || len(s.run) == 0 }

// Run runs s's policies in order. It returns false when one of them has
// answered the request.
func (s *Set) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	if s == nil {
		return true
	}
	for _, p := range s.run {
		if !p.Run(w, r, x) {
			return false
		}
	}
	return true
}
