// Package config reads a gateway config file: agentgateway's standalone
// format (`agentgateway -f config.yaml`) for the features tailgate
// implements, plus a small `tailnet:` block of tailgate's own.
//
// # What it does
//
// Load turns YAML into plain structs and nothing else: no CEL is compiled,
// no file named inside is read, no socket is opened. That is the job of the
// gateway's compile step. What Load guarantees is that the file is shaped
// right, strictly:
//
//   - a key agentgateway does not have is an "unknown key" error;
//   - a key agentgateway has but tailgate does not implement yet (for
//     example `mcpGuardrails`) is a "not supported by tailgate yet"
//     error, so a feature is never silently ignored;
//   - every error names the file, line, column and YAML path, and all of
//     them are reported at once (ErrorList).
//
// A policies key may also be declared by the policy module that compiles
// it (RegisterPolicy, policyblock.go: delay, retry); Load decodes it as
// strictly, so those keys are known only where that module is linked
// (the gateway always links package httppolicy).
//
// Loading is bounded (Limits, limits.go): a file over 4 MiB, aliases that
// expand past 10,000 nodes, or nesting deeper than 64 is refused with a
// LimitError naming the limit and, where there is one, the line — before
// anything is decoded, so a YAML bomb costs milliseconds, not gigabytes.
//
// # Usage
//
//	f, err := config.Load("config.yaml")
//	if err != nil {
//		return err // e.g. config.yaml:12:7: binds[0].listeners[0].routes[0].polices: unknown key (did you mean "policies"?)
//	}
//	for _, b := range f.Binds { ... }
//
// Types mirror the agentgateway JSON schema's names (LocalBind, LocalRoute,
// FilterOrPolicy...) with the "Local" prefix dropped.
package config

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// File is a whole gateway config file.
type File struct {
	Config           *Settings         `yaml:"config"`
	Binds            []Bind            `yaml:"binds"`
	FrontendPolicies *FrontendPolicies `yaml:"frontendPolicies"`
	// Tailnet is tailgate's own block: the embedded tsnet node that binds
	// with `tailnet: true` are served on. Not part of agentgateway.
	Tailnet *Tailnet `yaml:"tailnet"`

	Policies  Unsupported `yaml:"policies"`
	Workloads Unsupported `yaml:"workloads"`
	Services  Unsupported `yaml:"services"`
	// Backends are named backends routes refer to with `backend: name`
	// (gateways.go).
	Backends    []NamedBackend `yaml:"backends"`
	RouteGroups Unsupported    `yaml:"routeGroups"`
	// Gateways, Routes and TCPRoutes are agentgateway's named-gateway
	// form. Load turns HTTP/HTTPS gateways and the routes attached to
	// them into Binds (gateways.go); TLS passthrough gateways stay here
	// (egress.go).
	Gateways  Gateways       `yaml:"gateways"`
	Routes    []GatewayRoute `yaml:"routes"`
	TCPRoutes []TCPRoute     `yaml:"tcpRoutes"`
	LLM       Unsupported    `yaml:"llm"`
	// MCP is agentgateway's simplified form: one MCP backend served on
	// its own port (default 3000). Load turns it into a bind (listener
	// "mcp", route "default") appended to Binds.
	MCP *SimpleMCP  `yaml:"mcp"`
	UI  Unsupported `yaml:"ui"`
}

// Settings is agentgateway's top-level `config:` block. Only the admin
// addresses, log format, tracing and mcp are honoured; the addresses apply at
// start, not on reload (as in agentgateway).
type Settings struct {
	AdminAddr     string   `yaml:"adminAddr"`
	StatsAddr     string   `yaml:"statsAddr"`
	ReadinessAddr string   `yaml:"readinessAddr"`
	Logging       *Logging `yaml:"logging"`
	// MCP holds settings of every MCP backend (sessionTtl).
	MCP *MCPSettings `yaml:"mcp"`

	EnableIPv6   Unsupported `yaml:"enableIpv6"`
	DNS          Unsupported `yaml:"dns"`
	LocalXDSPath Unsupported `yaml:"localXdsPath"`
	ModelCatalog Unsupported `yaml:"modelCatalog"`
	Database     Unsupported `yaml:"database"`
	Storage      Unsupported `yaml:"storage"`
	CAAddress    Unsupported `yaml:"caAddress"`
	CAAuthToken  Unsupported `yaml:"caAuthToken"`
	XDSAddress   Unsupported `yaml:"xdsAddress"`
	XDSAuthToken Unsupported `yaml:"xdsAuthToken"`
	// Spiffe is the SPIFFE Workload API the gateway takes its X.509-SVID
	// from (for tls.spiffe and backendTLS.spiffe). Read at start only.
	Spiffe                           *Spiffe     `yaml:"spiffe"`
	Namespace                        Unsupported `yaml:"namespace"`
	Gateway                          Unsupported `yaml:"gateway"`
	TrustDomain                      Unsupported `yaml:"trustDomain"`
	AdditionalTrustDomains           Unsupported `yaml:"additionalTrustDomains"`
	SkipValidateTrustDomain          Unsupported `yaml:"skipValidateTrustDomain"`
	ServiceAccount                   Unsupported `yaml:"serviceAccount"`
	ClusterID                        Unsupported `yaml:"clusterId"`
	Network                          Unsupported `yaml:"network"`
	StandardAttributes               Unsupported `yaml:"standardAttributes"`
	Histograms                       Unsupported `yaml:"histograms"`
	Session                          Unsupported `yaml:"session"`
	SensitiveHeaders                 Unsupported `yaml:"sensitiveHeaders"`
	CustomFunctions                  Unsupported `yaml:"customFunctions"`
	ConnectionTerminationDeadline    Unsupported `yaml:"connectionTerminationDeadline"`
	ConnectionMinTerminationDeadline Unsupported `yaml:"connectionMinTerminationDeadline"`
	WorkerThreads                    Unsupported `yaml:"workerThreads"`
	Tracing                          *Tracing    `yaml:"tracing"`
	Metrics                          Unsupported `yaml:"metrics"`
	Backend                          Unsupported `yaml:"backend"`
	HBONE                            Unsupported `yaml:"hbone"`
}

// Spiffe is `config.spiffe`: where the SPIFFE Workload API listens.
type Spiffe struct {
	Pos Pos `yaml:"-"`
	// Endpoint is unix:///path of the SPIRE agent's socket.
	Endpoint string `yaml:"endpoint,required"`
}

// SpiffeBlock is `tls.spiffe` and `backendTLS.spiffe`: an empty object
// (agentgateway keeps it for future settings) that turns SPIFFE on.
type SpiffeBlock struct {
	Pos Pos `yaml:"-"`
}

// Logging is `config.logging`. Format is "text" (default) or "json" and
// applies to the access log; Level is accepted for compatibility.
type Logging struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`

	Filter   Unsupported `yaml:"filter"`
	Fields   Unsupported `yaml:"fields"`
	Database Unsupported `yaml:"database"`
}

// Tailnet configures the embedded Tailscale node (tsnet) that tailnet
// binds listen on. Callers reaching the gateway through it are identified
// with WhoIs and exposed to rules as source.tailscale.{node,user,tags}.
type Tailnet struct {
	Pos Pos `yaml:"-"`
	// Hostname is the node's name on the tailnet (MagicDNS name).
	Hostname string `yaml:"hostname,required"`
	// ControlURL is the coordination server; empty means Tailscale's.
	ControlURL string `yaml:"controlURL"`
	// AuthKey says where to read the auth key; never inline, so the file
	// can be shared and dumped without leaking it.
	AuthKey *SecretRef `yaml:"authKey"`
	// StateDir keeps the node's identity across restarts. Ephemeral nodes
	// keep state in memory and leave the tailnet when the gateway stops;
	// exactly one of the two must be set.
	StateDir  string `yaml:"stateDir"`
	Ephemeral bool   `yaml:"ephemeral"`
	// Tags are advertised by the node (AdvertiseTags).
	Tags []string `yaml:"tags"`
}

// SecretRef names where a secret lives: an environment variable or a file.
type SecretRef struct {
	Pos  Pos    `yaml:"-"`
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// Bind is one port the gateway listens on.
type Bind struct {
	Pos       Pos        `yaml:"-"`
	Port      int        `yaml:"port,required"`
	Listeners []Listener `yaml:"listeners,required"`
	// Tailnet (tailgate extension) serves this bind on the embedded
	// tailnet node instead of the host's network.
	Tailnet bool `yaml:"tailnet"`
	// TrustedProxies (tailgate extension) are the peers, as IPs or CIDRs,
	// whose X-Forwarded-*, X-Real-IP and Forwarded headers the gateway
	// believes; from any other peer they are replaced. Empty: none.
	TrustedProxies []string `yaml:"trustedProxies"`
	// BodyReadTimeout (tailgate extension) bounds how long a request body
	// may take to arrive (a Go duration; default 30s, "0s" turns it off).
	BodyReadTimeout Duration `yaml:"bodyReadTimeout"`

	// TunnelProtocol is "direct" (default) or "connect": the bind then
	// accepts only HTTP CONNECT and hands each tunnel to the gateway
	// listening on the requested port (egress.go).
	TunnelProtocol string `yaml:"tunnelProtocol"`
	// Mode is "standard" (default: the port is opened) or "internal":
	// the port is never opened, and only tunnels of a tunnelProtocol:
	// connect bind to that port reach it (TLS interception, mitm.go).
	Mode string `yaml:"mode"`

	// YAMLPath, when set, is where the bind was written (a gateways:
	// entry Load turned into a bind); errors use it, not binds[...].
	YAMLPath string `yaml:"-"`
}

// Listener is a protocol (and optionally a hostname) on a bind.
type Listener struct {
	Pos       Pos              `yaml:"-"`
	Name      string           `yaml:"name"`
	Namespace string           `yaml:"namespace"`
	Hostname  string           `yaml:"hostname"`
	Protocol  string           `yaml:"protocol"`
	TLS       *TLS             `yaml:"tls"`
	Routes    []Route          `yaml:"routes"`
	Policies  *GatewayPolicies `yaml:"policies"`

	TCPRoutes Unsupported `yaml:"tcpRoutes"`

	// YAMLPath, when set, is where the listener was written (under
	// gateways:); its policies were written inline there, so errors
	// about them use this path without ".policies".
	YAMLPath string `yaml:"-"`
}

// TLS is a listener's server certificate: PEM files, or (spiffe) the
// gateway's SVID, with client SVIDs required.
type TLS struct {
	Pos    Pos          `yaml:"-"`
	Cert   string       `yaml:"cert"`
	Key    string       `yaml:"key"`
	Spiffe *SpiffeBlock `yaml:"spiffe"`
	// Mode is "static" (default: cert and key are the certificate
	// served) or "dynamicCa": cert and key are a CA, and the gateway
	// serves a leaf certificate it mints for each client's SNI.
	Mode string `yaml:"mode"`

	Root              Unsupported `yaml:"root"`
	CipherSuites      Unsupported `yaml:"cipherSuites"`
	MinTLSVersion     Unsupported `yaml:"minTLSVersion"`
	MinTLSVersion2    Unsupported `yaml:"minTlsVersion"`
	MaxTLSVersion     Unsupported `yaml:"maxTLSVersion"`
	MaxTLSVersion2    Unsupported `yaml:"maxTlsVersion"`
	KeyExchangeGroups Unsupported `yaml:"keyExchangeGroups"`
}

// GatewayPolicies are listener-level policies; they run before the
// route's own. A route accepts every one of them too (RoutePolicies
// embeds GatewayPolicies), so a policy both levels have is declared once,
// here.
type GatewayPolicies struct {
	JWTAuth       *JWTAuth  `yaml:"jwtAuth"`
	Authorization *RuleSet  `yaml:"authorization"`
	ExtAuthz      *ExtAuthz `yaml:"extAuthz"`
	CORS          *CORS     `yaml:"cors"`
	// OIDC logs browsers in with the authorization-code flow and keeps
	// them in an encrypted session cookie (sets jwt.*).
	OIDC *OIDC `yaml:"oidc"`

	// Transformations set request headers from CEL (extauthzcache.go).
	Transformations *Transformations `yaml:"transformations"`

	ExtProc   Unsupported `yaml:"extProc"`
	BasicAuth Unsupported `yaml:"basicAuth"`
	APIKey    Unsupported `yaml:"apiKey"`

	// Blocks are the keys policy modules declare themselves
	// (policyblock.go), on both levels.
	Blocks Blocks `yaml:"-"`
}

// Route sends matching requests through its policies to its backends.
type Route struct {
	Pos       Pos            `yaml:"-"`
	Name      string         `yaml:"name"`
	Namespace string         `yaml:"namespace"`
	RuleName  string         `yaml:"ruleName"`
	Hostnames []string       `yaml:"hostnames"`
	Matches   []Match        `yaml:"matches"`
	Policies  *RoutePolicies `yaml:"policies"`
	Backends  []Backend      `yaml:"backends"`
	// PathNormalization (tailgate extension) lets this route receive path
	// characters the gateway refuses by default.
	PathNormalization *PathNormalization `yaml:"pathNormalization"`
	// YAMLPath, when set, is where the route was written (the top-level
	// mcp: block, or routes[i]); error messages use it instead of
	// binds[...].routes[...].
	YAMLPath string `yaml:"-"`
	// checked: this is a copy of a top-level route, checked once where
	// it was written, attached to one of its listeners.
	checked bool
}

// PathNormalization is a route's opt-out from refusing some paths. Each
// trusts the route's backend to treat the character as data.
type PathNormalization struct {
	Pos Pos `yaml:"-"`
	// AllowEncodedSlashes admits %2F and %5C inside a path segment.
	AllowEncodedSlashes bool `yaml:"allowEncodedSlashes"`
	// AllowSemicolons admits `;` (path parameters).
	AllowSemicolons bool `yaml:"allowSemicolons"`
}

// Match is one way a request can select a route; all set fields must
// match. No matches at all means `path: {pathPrefix: /}`.
type Match struct {
	Pos     Pos          `yaml:"-"`
	Headers []ValueMatch `yaml:"headers"`
	Path    *PathMatch   `yaml:"path"`
	Method  string       `yaml:"method"`
	Query   []ValueMatch `yaml:"query"`
}

// ValueMatch matches a named header or query parameter.
type ValueMatch struct {
	Pos   Pos         `yaml:"-"`
	Name  string      `yaml:"name,required"`
	Value StringMatch `yaml:"value,required"`
}

// StringMatch is `{exact: ...}` or `{regex: ...}`.
type StringMatch struct {
	Pos   Pos
	Exact *string
	Regex *string
}

func (m *StringMatch) decodeNode(d *decoder, n *yaml.Node, path string) {
	m.Pos = Pos{n.Line, n.Column}
	d.stringUnion(n, path, nil, optArm("exact", &m.Exact), optArm("regex", &m.Regex))
}

// PathMatch is `{exact: ...}`, `{pathPrefix: ...}` or `{regex: ...}`.
type PathMatch struct {
	Pos    Pos
	Exact  *string
	Prefix *string
	Regex  *string
}

func (m *PathMatch) decodeNode(d *decoder, n *yaml.Node, path string) {
	m.Pos = Pos{n.Line, n.Column}
	d.stringUnion(n, path, nil, optArm("exact", &m.Exact), optArm("pathPrefix", &m.Prefix), optArm("regex", &m.Regex))
}

// RoutePolicies is agentgateway's FilterOrPolicy for the keys tailgate
// implements: the listener's keys (GatewayPolicies) and the route's own.
type RoutePolicies struct {
	GatewayPolicies `yaml:",inline"`

	RequestHeaderModifier  *HeaderModifier `yaml:"requestHeaderModifier"`
	ResponseHeaderModifier *HeaderModifier `yaml:"responseHeaderModifier"`
	LocalRateLimit         *LocalRateLimit `yaml:"localRateLimit"`
	// RemoteRateLimit asks an Envoy rate-limit service (remoteratelimit.go).
	RemoteRateLimit *RemoteRateLimit `yaml:"remoteRateLimit"`
	Timeout         *Timeout         `yaml:"timeout"`

	RequestRedirect *RequestRedirect `yaml:"requestRedirect"`
	URLRewrite      *URLRewrite      `yaml:"urlRewrite"`
	RequestMirror   *RequestMirror   `yaml:"requestMirror"`
	DirectResponse  *DirectResponse  `yaml:"directResponse"`
	BackendTLS      *BackendTLS      `yaml:"backendTLS"`
	BackendAuth     *BackendAuth     `yaml:"backendAuth"`
	// MCPAuthentication is MCP's OAuth resource-server role (RFC 9728).
	MCPAuthentication *MCPAuthentication `yaml:"mcpAuthentication"`
	// MCPAuthorization decides which MCP tools, prompts and resources a
	// caller may see and use (rules over mcp.*, jwt.*, source.*); it
	// applies to the route's MCP backends.
	MCPAuthorization *RuleSet `yaml:"mcpAuthorization"`
	// A2A marks the route's traffic as Agent2Agent: agent cards are
	// rewritten to point back through the gateway, calls are logged with
	// their JSON-RPC method.
	A2A *A2A `yaml:"a2a"`

	MCPGuardrails Unsupported `yaml:"mcpGuardrails"`
	AI            Unsupported `yaml:"ai"`
	BackendTunnel Unsupported `yaml:"backendTunnel"`
	CSRF          Unsupported `yaml:"csrf"`
	Buffer        Unsupported `yaml:"buffer"`
}

// Backend is one upstream of a route. Exactly one kind must be set:
// `host` (an HTTP upstream) or `mcp` (federated MCP servers).
type Backend struct {
	Pos    Pos         `yaml:"-"`
	Weight *int        `yaml:"weight"`
	Host   string      `yaml:"host"`
	MCP    *MCPBackend `yaml:"mcp"`
	// Policies are the backend's own (tokenexchange.go); a key set here
	// replaces the route's for requests sent to this backend.
	Policies *BackendPolicies `yaml:"policies"`
	// Backend names a top-level backends: entry; Load copies its host or
	// mcp (and policies, unless set here) into this backend.
	Backend string `yaml:"backend"`
	// YAMLPath, when set, is where the named backend this one refers to
	// was written (backends[i]).
	YAMLPath string `yaml:"-"`

	// Dynamic sends each request to its own Host on the bind's port;
	// only routes of a mode: internal bind may use it (checkDynamic).
	Dynamic *DynamicBackend `yaml:"dynamic"`

	Service    Unsupported `yaml:"service"`
	Internal   Unsupported `yaml:"internal"`
	AI         Unsupported `yaml:"ai"`
	AWS        Unsupported `yaml:"aws"`
	RouteGroup Unsupported `yaml:"routeGroup"`
	Invalid    Unsupported `yaml:"invalid"`
}

// FrontendPolicies apply to all traffic, before routing.
type FrontendPolicies struct {
	NetworkAuthorization *RuleSet `yaml:"networkAuthorization"`
	// AccessLog shapes the access log; Logging is its older name.
	AccessLog *AccessLog    `yaml:"accessLog"`
	Logging   *AccessLog    `yaml:"logging"`
	HTTP      *FrontendHTTP `yaml:"http"`

	TLS             Unsupported `yaml:"tls"`
	TCP             Unsupported `yaml:"tcp"`
	NetworkExtAuthz Unsupported `yaml:"networkExtAuthz"`
	Proxy           Unsupported `yaml:"proxy"`
	ProxyProtocol   Unsupported `yaml:"proxyProtocol"`
	Connect         Unsupported `yaml:"connect"`
	// Tracing exports a span per sampled request (OTLP), overriding
	// config.tracing.
	Tracing *FrontendTracing `yaml:"tracing"`
}

// RuleSet is `{rules: [...]}`, shared by networkAuthorization and
// authorization.
type RuleSet struct {
	Pos   Pos    `yaml:"-"`
	Rules []Rule `yaml:"rules,required"`
}

// RuleKind says how a rule takes part in a decision.
type RuleKind string

const (
	Allow   RuleKind = "allow"
	Deny    RuleKind = "deny"
	Require RuleKind = "require"
)

// Rule is a CEL expression with its kind. A bare string is an allow rule.
type Rule struct {
	Pos  Pos
	Kind RuleKind
	Expr string
}

func (r *Rule) decodeNode(d *decoder, n *yaml.Node, path string) {
	r.Pos = Pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode {
		r.Kind, r.Expr = Allow, d.str(n, path)
		return
	}
	key, val, ok := d.oneOfKeys(n, path, "allow", "deny", "require")
	if !ok {
		return
	}
	r.Kind = RuleKind(key)
	r.Expr = d.str(val, join(path, key))
	if v := resolve(val); v != nil {
		r.Pos = Pos{v.Line, v.Column}
	}
}

// JWTAuth validates bearer tokens. Either the single-provider fields
// (issuer, audiences, jwks) or `providers` is set; Load folds the former
// into Providers.
type JWTAuth struct {
	Pos       Pos           `yaml:"-"`
	Mode      string        `yaml:"mode"` // strict | optional (default) | permissive
	Providers []JWTProvider `yaml:"providers"`

	Issuer               string             `yaml:"issuer"`
	Audiences            []string           `yaml:"audiences"`
	JWKS                 *JWKSSource        `yaml:"jwks"`
	JWTValidationOptions *ValidationOptions `yaml:"jwtValidationOptions"`
	// Algorithms (tailgate extension) is the allowlist of signing
	// algorithms; empty means the asymmetric ones (RS*, PS*, ES*, EdDSA).
	Algorithms []string `yaml:"algorithms"`

	Location Unsupported `yaml:"location"`
}

// JWTProvider is one accepted token issuer.
type JWTProvider struct {
	Pos                  Pos                `yaml:"-"`
	Issuer               string             `yaml:"issuer,required"`
	Audiences            []string           `yaml:"audiences"`
	JWKS                 *JWKSSource        `yaml:"jwks,required"`
	JWTValidationOptions *ValidationOptions `yaml:"jwtValidationOptions"`
	Algorithms           []string           `yaml:"algorithms"`
}

// ValidationOptions lists claims a token must carry (default: exp).
type ValidationOptions struct {
	RequiredClaims []string `yaml:"requiredClaims"`
}

// JWKSSource is inline JSON (a string), `{file: path}` or `{url: ...}`.
type JWKSSource struct {
	Pos    Pos
	Inline string
	File   string
	URL    string
}

func (s *JWKSSource) decodeNode(d *decoder, n *yaml.Node, path string) {
	s.Pos = Pos{n.Line, n.Column}
	d.stringUnion(n, path, &s.Inline, arm("file", &s.File), arm("url", &s.URL))
}

// ExtAuthz asks an external HTTP service whether to let a request through.
type ExtAuthz struct {
	Pos                   Pos              `yaml:"-"`
	Host                  string           `yaml:"host"`
	Protocol              *ExtAuthzProto   `yaml:"protocol"`
	FailureMode           *ExtAuthzFailure `yaml:"failureMode"`
	IncludeRequestHeaders []string         `yaml:"includeRequestHeaders"`

	Conditional        Unsupported `yaml:"conditional"`
	Policies           Unsupported `yaml:"policies"`
	IncludeRequestBody Unsupported `yaml:"includeRequestBody"`
	// Cache keeps the service's answers (extauthzcache.go).
	Cache   *ExtAuthzCache `yaml:"cache"`
	Service Unsupported    `yaml:"service"`
	Backend Unsupported    `yaml:"backend"`
}

// ExtAuthzProto is `{http: {...}}`; gRPC is not implemented yet.
type ExtAuthzProto struct {
	HTTP *ExtAuthzHTTP `yaml:"http"`
	GRPC Unsupported   `yaml:"grpc"`
}

// ExtAuthzHTTP shapes the call to the authorization service and what is
// kept from its answer. Values are CEL expressions.
type ExtAuthzHTTP struct {
	Pos                    Pos               `yaml:"-"`
	Path                   string            `yaml:"path"`
	AddRequestHeaders      map[string]string `yaml:"addRequestHeaders"`
	Metadata               map[string]string `yaml:"metadata"`
	IncludeResponseHeaders []string          `yaml:"includeResponseHeaders"`
	// Redirect (CEL, request phase) is where a browser is sent (302)
	// when the service answers 401 or 403, e.g. a sign-in page.
	Redirect string `yaml:"redirect"`

	// Body is the check request's body (CEL: a string or bytes as they
	// are, anything else as JSON); unset, the check has no body.
	Body string `yaml:"body"`
}

// ExtAuthzFailure is "deny" (default), "allow" or `{denyWithStatus: N}`.
type ExtAuthzFailure struct {
	Pos            Pos
	Allow          bool
	DenyWithStatus int
}

func (f *ExtAuthzFailure) decodeNode(d *decoder, n *yaml.Node, path string) {
	f.Pos = Pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "allow":
			f.Allow = true
		case "deny":
		default:
			d.fail(n, path, "expected allow, deny or {denyWithStatus: N}, got %s", kindName(n))
		}
		return
	}
	var v struct {
		DenyWithStatus int `yaml:"denyWithStatus,required"`
	}
	d.decode(n, reflectValue(&v), path)
	f.DenyWithStatus = v.DenyWithStatus
}

// CORS answers preflights and decorates responses for allowed origins.
type CORS struct {
	Pos              Pos      `yaml:"-"`
	AllowCredentials bool     `yaml:"allowCredentials"`
	AllowHeaders     []string `yaml:"allowHeaders"`
	AllowMethods     []string `yaml:"allowMethods"`
	AllowOrigins     []string `yaml:"allowOrigins"`
	ExposeHeaders    []string `yaml:"exposeHeaders"`
	MaxAge           Duration `yaml:"maxAge"`
}

// LocalRateLimit is a list of token buckets, all of which must have a
// token for a request to pass.
type LocalRateLimit struct {
	Pos     Pos
	Buckets []RateLimitSpec
}

// RateLimitSpec is one token bucket.
type RateLimitSpec struct {
	Pos           Pos      `yaml:"-"`
	MaxTokens     int64    `yaml:"maxTokens"`
	TokensPerFill int64    `yaml:"tokensPerFill"`
	FillInterval  Duration `yaml:"fillInterval,required"`
	Type          string   `yaml:"type"` // requests (default); tokens is for LLM backends
}

func (l *LocalRateLimit) decodeNode(d *decoder, n *yaml.Node, path string) {
	l.Pos = Pos{n.Line, n.Column}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := resolve(n.Content[i]); k.Value == "conditional" {
				d.fail(k, join(path, "conditional"), "not supported by tailgate yet")
				return
			}
		}
		d.fail(n, path, "expected a list of rate limits")
		return
	}
	d.decode(n, reflectValue(&l.Buckets), path)
}

// Timeout bounds a request (Go durations, e.g. "10s").
type Timeout struct {
	Pos                   Pos      `yaml:"-"`
	RequestTimeout        Duration `yaml:"requestTimeout"`
	BackendRequestTimeout Duration `yaml:"backendRequestTimeout"`
}

// HeaderModifier adds, sets and removes headers.
type HeaderModifier struct {
	Add    map[string]string `yaml:"add"`
	Set    map[string]string `yaml:"set"`
	Remove []string          `yaml:"remove"`
}

// Load reads and decodes the config file at path.
func Load(path string) (*File, error) {
	return LoadWith(path, Limits{})
}

// LoadWith is Load under the given limits (zero fields: the defaults).
func LoadWith(path string, lim Limits) (*File, error) {
	data, err := ReadFile(path, lim.MaxBytes)
	if err != nil {
		if errors.Is(err, ErrLimit) {
			return nil, err
		}
		return nil, fmt.Errorf("read gateway config: %w", err)
	}
	return parse(path, data, lim)
}

// Parse decodes config bytes under the default limits; name is used in
// error messages.
func Parse(name string, data []byte) (*File, error) {
	return parse(name, data, Limits{})
}

// ParseWith is Parse under the given limits (zero fields: the defaults).
func ParseWith(name string, data []byte, lim Limits) (*File, error) {
	return parse(name, data, lim)
}

func parse(name string, data []byte, lim Limits) (*File, error) {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxBytes {
		return nil, &LimitError{File: name, Limit: "size", Max: lim.MaxBytes, Msg: fmt.Sprintf("the config is %d bytes", len(data))}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		if strings.Contains(err.Error(), "exceeded max depth") {
			// yaml.v3's own guard, far above ours: the same limit to the user.
			return nil, &LimitError{File: name, Limit: "nesting depth", Max: int64(lim.MaxDepth), Msg: err.Error()}
		}
		return nil, &Error{File: name, Msg: fmt.Sprintf("invalid YAML: %v", err)}
	}
	if err := checkLimits(name, &root, lim); err != nil {
		return nil, err
	}
	f := &File{}
	n := resolve(&root)
	if n == nil || n.Kind == 0 || isNull(n) {
		return nil, &Error{File: name, Msg: errNoDocument.Error()}
	}
	d := &decoder{file: name}
	expandEnv(d, n, osLookupEnv)
	d.decode(n, reflectValue(f), "")
	d.checkSemantics(f)
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return f, nil
}

// SimpleMCP is the top-level `mcp:` block: an MCP backend (its keys
// inline) with the route's policies, on Port.
type SimpleMCP struct {
	Pos        Pos `yaml:"-"`
	Port       int `yaml:"port"`
	MCPBackend `yaml:",inline"`
	Policies   *RoutePolicies `yaml:"policies"`
	// Gateways attaches the MCP route to named HTTP gateways instead of
	// its own port (gateways.go): "<gateway>" or "<gateway>/<listener>".
	// Without port or gateways, an HTTP gateway named default is used
	// when there is one.
	Gateways GatewayRefs `yaml:"gateways"`
}

// MCPBackend is `backends[].mcp`: MCP servers (targets) federated behind
// one MCP endpoint.
type MCPBackend struct {
	Pos     Pos         `yaml:"-"`
	Targets []MCPTarget `yaml:"targets,required"`
	// PrefixMode is conditional (default: prefix names with the target
	// only when there are several targets), always or never.
	PrefixMode string `yaml:"prefixMode"`
	// FailureMode is failClosed (default) or failOpen.
	FailureMode string `yaml:"failureMode"`
	// StatefulMode is stateful (default: Mcp-Session-Id sessions) or
	// stateless.
	StatefulMode string `yaml:"statefulMode"`

	DNSRebindingProtection Unsupported `yaml:"dnsRebindingProtection"`
}

// MCPTarget is one MCP server: exactly one of stdio, mcp (streamable
// HTTP), sse or openapi (an HTTP API whose operations become tools).
type MCPTarget struct {
	Pos     Pos         `yaml:"-"`
	Name    string      `yaml:"name,required"`
	Stdio   *MCPStdio   `yaml:"stdio"`
	MCP     *MCPRemote  `yaml:"mcp"`
	SSE     *MCPRemote  `yaml:"sse"`
	OpenAPI *MCPOpenAPI `yaml:"openapi"`

	Policies Unsupported `yaml:"policies"`
}

// MCPStdio is a local MCP server the gateway starts and supervises.
type MCPStdio struct {
	Pos  Pos               `yaml:"-"`
	Cmd  string            `yaml:"cmd,required"`
	Args []string          `yaml:"args"`
	Env  map[string]string `yaml:"env"`
	// Reuse (tailgate extension, default true) shares one process among
	// all sessions; false starts a fresh process per MCP session, for
	// servers that keep per-client state.
	Reuse *bool `yaml:"reuse"`
}

// MCPRemote is an MCP server reached over HTTP: `host` is a URL
// (http://127.0.0.1:9000/mcp) or host:port, with optional `path`.
type MCPRemote struct {
	Pos  Pos    `yaml:"-"`
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	Path string `yaml:"path"`

	Backend Unsupported `yaml:"backend"`
}
