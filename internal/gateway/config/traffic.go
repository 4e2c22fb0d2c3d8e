package config

import (
	"strconv"

	"gopkg.in/yaml.v3"
)

// This file is the traffic policies agentgateway's examples use beyond
// authentication and authorization: direct responses, redirects,
// rewrites, mirrors, fault injection, retries, and the frontend access
// log. Their semantics are agentgateway's (crates/agentgateway/src/http/
// filters.rs, delay.rs, retry.rs; telemetry/log.rs).

// NamedExpr is one entry of an ordered name → CEL map (accessLog.add).
type NamedExpr struct {
	Pos  Pos
	Name string
	Expr string
}

// OrderedExprs is a YAML mapping of names to CEL expressions, kept in
// file order so log fields come out in the order they were written.
type OrderedExprs []NamedExpr

func (o *OrderedExprs) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected an object of name: CEL expression, got %s", kindName(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		v := resolve(n.Content[i+1])
		kp := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be strings")
			continue
		}
		expr := d.str(v, kp)
		*o = append(*o, NamedExpr{Pos: Pos{v.Line, v.Column}, Name: k.Value, Expr: expr})
	}
}

// AccessLog is frontendPolicies.accessLog (or its older name, logging):
// which requests are logged (filter, a CEL bool) and which fields are
// added (CEL values) or removed (names of the built-in fields).
type AccessLog struct {
	Pos    Pos          `yaml:"-"`
	Filter string       `yaml:"filter"`
	Add    OrderedExprs `yaml:"add"`
	Remove []string     `yaml:"remove"`

	// OTLP also exports each request as an OpenTelemetry log record.
	OTLP *AccessLogOTLP `yaml:"otlp"`

	Database Unsupported `yaml:"database"`
}

// FrontendHTTP is frontendPolicies.http: HTTP server settings for every
// bind, applied when the bind starts. tailgate serves HTTP/1.1 only, so
// the http2 keys are refused, and so are the limits it does not enforce.
type FrontendHTTP struct {
	Pos              Pos      `yaml:"-"`
	HTTP1IdleTimeout Duration `yaml:"http1IdleTimeout"`

	MaxBufferSize         Unsupported `yaml:"maxBufferSize"`
	HTTP1MaxHeaders       Unsupported `yaml:"http1MaxHeaders"`
	MaxConnectionDuration Unsupported `yaml:"maxConnectionDuration"`

	HTTP1HeaderCase           Unsupported `yaml:"http1HeaderCase"`
	HTTP2WindowSize           Unsupported `yaml:"http2WindowSize"`
	HTTP2ConnectionWindowSize Unsupported `yaml:"http2ConnectionWindowSize"`
	HTTP2FrameSize            Unsupported `yaml:"http2FrameSize"`
	HTTP2MaxHeaderSize        Unsupported `yaml:"http2MaxHeaderSize"`
	HTTP2KeepaliveInterval    Unsupported `yaml:"http2KeepaliveInterval"`
	HTTP2KeepaliveTimeout     Unsupported `yaml:"http2KeepaliveTimeout"`
}

// DirectResponse answers the request itself: `{status, body, headers}`,
// or `{conditional: [{condition, status, body, ...}]}` where the first
// entry whose condition (CEL bool) is true answers, an entry without a
// condition is the fallback, and no match forwards the request (this is
// how agentgateway's examples inject aborts).
type DirectResponse struct {
	Pos         Pos
	Responses   []DirectResponseSpec
	Conditional bool
}

// DirectResponseSpec is one response.
type DirectResponseSpec struct {
	Pos Pos `yaml:"-"`
	// Condition is set only in the conditional form.
	Condition      string            `yaml:"condition"`
	Status         int               `yaml:"status,required"`
	Body           string            `yaml:"body"`
	BodyExpression string            `yaml:"bodyExpression"`
	Headers        map[string]string `yaml:"headers"`
}

func (r *DirectResponse) decodeNode(d *decoder, n *yaml.Node, path string) {
	r.Pos = Pos{n.Line, n.Column}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if resolve(n.Content[i]).Value == "conditional" {
				if len(n.Content) > 2 {
					d.fail(n, path, "conditional may not be combined with other keys")
					return
				}
				r.Conditional = true
				d.decode(n.Content[i+1], reflectValue(&r.Responses), join(path, "conditional"))
				return
			}
		}
	}
	var one DirectResponseSpec
	d.decode(n, reflectValue(&one), path)
	if one.Condition != "" {
		d.failAt(one.Pos, join(path, "condition"), "condition is only allowed inside conditional: [...]")
	}
	r.Responses = []DirectResponseSpec{one}
}

// PathRewrite is `{full: /x}` (replace the whole path) or `{prefix: /x}`
// (replace the part the route's pathPrefix matched).
type PathRewrite struct {
	Pos    Pos
	Full   *string
	Prefix *string
}

func (p *PathRewrite) decodeNode(d *decoder, n *yaml.Node, path string) {
	p.Pos = Pos{n.Line, n.Column}
	d.stringUnion(n, path, nil, optArm("full", &p.Full), optArm("prefix", &p.Prefix))
}

// AuthorityRewrite is `{full: host:port}`, `{host: h}`, `{port: n}`,
// "auto" (the backend's host:port) or "none" (keep the caller's Host).
type AuthorityRewrite struct {
	Pos  Pos
	Full string
	Host string
	Port int
	Auto bool
	None bool
}

func (a *AuthorityRewrite) decodeNode(d *decoder, n *yaml.Node, path string) {
	a.Pos = Pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "auto":
			a.Auto = true
		case "none":
			a.None = true
		default:
			d.fail(n, path, "expected auto, none, {full: ...}, {host: ...} or {port: ...}, got %s", kindName(n))
		}
		return
	}
	key, val, ok := d.oneOfKeys(n, path, "full", "host", "port")
	if !ok {
		return
	}
	switch key {
	case "full":
		a.Full = d.str(val, join(path, key))
	case "host":
		a.Host = d.str(val, join(path, key))
	default:
		d.decode(val, reflectValue(&a.Port), join(path, key))
		if a.Port < 1 || a.Port > 65535 {
			d.fail(val, join(path, key), "port must be between 1 and 65535, got %s", strconv.Itoa(a.Port))
		}
	}
}

// URLRewrite changes the request's path and Host before it is forwarded.
type URLRewrite struct {
	Pos       Pos               `yaml:"-"`
	Authority *AuthorityRewrite `yaml:"authority"`
	Path      *PathRewrite      `yaml:"path"`
}

// RequestRedirect answers with a redirect (default 302) to the request's
// URL changed as given.
type RequestRedirect struct {
	Pos       Pos               `yaml:"-"`
	Scheme    string            `yaml:"scheme"`
	Authority *AuthorityRewrite `yaml:"authority"`
	Path      *PathRewrite      `yaml:"path"`
	Status    int               `yaml:"status"`
}

// SimpleBackend is a backend named by host only (requestMirror.backend).
type SimpleBackend struct {
	Pos     Pos         `yaml:"-"`
	Host    string      `yaml:"host,required"`
	Service Unsupported `yaml:"service"`
	Backend Unsupported `yaml:"backend"`
}

// RequestMirror sends a copy of a fraction (0.0–1.0) of requests to
// another backend and ignores its answer.
type RequestMirror struct {
	Pos        Pos            `yaml:"-"`
	Backend    *SimpleBackend `yaml:"backend,required"`
	Percentage Float          `yaml:"percentage,required"`
}

// Float is a YAML number ("0.5", ".5", "1").
type Float struct {
	Set bool
	V   float64
}

func (f *Float) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") {
		d.fail(n, path, "expected a number, got %s", kindName(n))
		return
	}
	v, err := strconv.ParseFloat(n.Value, 64)
	if err != nil {
		d.fail(n, path, "expected a number, got %s", kindName(n))
		return
	}
	f.Set, f.V = true, v
}
