// Package httppolicy is the policies a listener or a route applies to
// each HTTP request: the keys of a `policies:` block (agentgateway's
// FilterOrPolicy). It is not the tailnet policy file (that is
// internal/grants), nor the connection-level networkAuthorization or the
// per-tool mcpAuthorization (rule sets of package gateway/cel, run by the
// gateway and by gateway/mcp).
//
// # Modules
//
// Each policy key is a Module, registered with one line in modules
// (set.go): it takes its own block out of the decoded config, compiles it
// once (durations already parsed by config, CEL programs compiled, JWKS
// files read) into a Policy, and declares the Phase it runs in. Compile
// builds a listener's or a route's Set: its policies in phase order.
// Problems go to the Compiler with their YAML path and line, so one load
// reports all of them; nothing is parsed or compiled on the request path.
//
//	rate limit → cors → jwtAuth, mcpAuthentication → extAuthz → authorization
//	→ remoteRateLimit → directResponse, requestRedirect → request headers,
//	transformations, urlRewrite, backendAuth
//	→ response headers → requestMirror, delay
//
// A listener's Set runs before its route's. timeout, retry, backendTLS
// and a2a are modules too, but they configure the route
// (Set.RequestTimeout, Set.BackendTimeout, Set.Retry, Set.BackendTLS,
// Set.A2A) instead of running in the chain. traffic.go, backend.go and
// mcpauthn.go follow agentgateway's semantics
// (crates/agentgateway/src/http/filters.rs, delay.rs, mcp/auth.rs).
//
// The policies themselves:
//
//   - JWTAuth: bearer-token validation (go-jose), modes strict / optional /
//     permissive, JWKS from inline JSON, a file or a URL, refetched on an
//     unknown key id at most once per RefetchInterval;
//   - ExtAuthz: the HTTP form of external authorization;
//   - Authorization: a request-phase rule set (gateway/cel);
//   - CORS, RateLimit (token buckets), HeaderModifier;
//   - RemoteRateLimit: Envoy's rate-limit service protocol over gRPC;
//   - TokenExchange: backendAuth.oauthTokenExchange (RFC 8693 / 7523);
//   - Transformations: request headers from CEL values.
//
// A backend's own policies (backends[].policies) are compiled like a
// route's and laid over it with Overlay.
//
// # Adding a policy
//
// A policy is one new file here plus one line in modules (set.go). The
// file declares the policy's YAML block as a Go struct (yaml tags; a
// config.Pos field is filled with the block's position; config.Duration
// and config's union types decode as everywhere else), registers it with
// blockModule, and compiles it into a Policy:
//
//	// Pause is the route's `pause:` block.
//	type Pause struct {
//		Pos config.Pos      `yaml:"-"`
//		For config.Duration `yaml:"for,required"`
//	}
//
//	// Check runs when the block is decoded: typed durations, enums.
//	func (p *Pause) Check(c *config.Check, path string) {
//		c.Duration(p.Pos, path+".for", &p.For, false)
//	}
//
//	var pause = blockModule("pause", Forward, config.RouteLevel,
//		func(p *Pause, path string, c Compiler) Policy { return pauseFor(p.For.D) })
//
// config decodes a registered key with its strict decoder (unknown keys,
// wrong types and failed checks are load errors naming the YAML path and
// line, suggestions included) and keeps the block in the policies'
// Blocks; blockModule hands it to compile. delay.go and retry.go (with
// a Check) are the examples.
// Older policies still declare their block in gateway/config (a field of
// GatewayPolicies or RoutePolicies, checks in config/check*.go) and are
// registered with module.
//
// Policies decide; the gateway's Exchange turns a refusal into an
// access-log line and a metric, in one place (Deny, Exchange.Refuse).
package httppolicy
