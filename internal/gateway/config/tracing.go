package config

import (
	"net/url"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file is request tracing: agentgateway's `config.tracing` (the
// process-wide OTLP exporter, RawTracing in its schema) and
// `frontendPolicies.tracing` (TracingConfig). Semantics are agentgateway's
// (crates/agentgateway/src/telemetry/trc.rs, log.rs TraceSampler).

// Tracing is `config.tracing`: where spans are exported and how requests
// are sampled.
type Tracing struct {
	Pos Pos `yaml:"-"`
	// OTLPEndpoint is the collector's URL (http://host:4317). A path in
	// it is the export path when Path is unset.
	OTLPEndpoint string `yaml:"otlpEndpoint"`
	// Headers go on every export (e.g. an API key).
	Headers map[string]string `yaml:"headers"`
	// OTLPProtocol is grpc (agentgateway's default) or http.
	OTLPProtocol string `yaml:"otlpProtocol"`
	// Fields adds span attributes (CEL, after the response) and removes
	// built-in ones by name.
	Fields         *TraceFields `yaml:"fields"`
	RandomSampling *Sampling    `yaml:"randomSampling"`
	ClientSampling *Sampling    `yaml:"clientSampling"`
	// Path is the OTLP/HTTP export path (default /v1/traces).
	Path string `yaml:"path"`
}

// TraceFields is config.tracing.fields (agentgateway's RawLoggingFields).
type TraceFields struct {
	Add    OrderedExprs `yaml:"add"`
	Remove []string     `yaml:"remove"`
}

// FrontendTracing is `frontendPolicies.tracing`. When both it and
// config.tracing are set, it decides for every request (as agentgateway's
// frontend policy does).
type FrontendTracing struct {
	Pos Pos `yaml:"-"`
	// Host is the collector, host:port (a URL is accepted too).
	Host string `yaml:"host"`
	// Attributes are added to every span (CEL, after the response);
	// Remove drops built-in attributes first.
	Attributes OrderedExprs `yaml:"attributes"`
	Remove     []string     `yaml:"remove"`
	// Resources are the exporter's resource attributes (service.name...),
	// CEL evaluated once, at load, without request variables.
	Resources      OrderedExprs `yaml:"resources"`
	RandomSampling *Sampling    `yaml:"randomSampling"`
	ClientSampling *Sampling    `yaml:"clientSampling"`
	// Filter keeps a sampled span only when true (an error drops it).
	Filter   string `yaml:"filter"`
	Path     string `yaml:"path"`
	Protocol string `yaml:"protocol"` // grpc (default) | http

	Policies Unsupported `yaml:"policies"`
	Service  Unsupported `yaml:"service"`
	Backend  Unsupported `yaml:"backend"`
}

// Sampling is agentgateway's StringBoolFloat: true/false, a fraction
// between 0 and 1, or a CEL expression (a string) giving either.
type Sampling struct {
	Pos Pos
	// Expr is the CEL source; a YAML bool or number is kept as its text
	// ("true", "0.25"), which is the same CEL value.
	Expr string
}

func (s *Sampling) decodeNode(d *decoder, n *yaml.Node, path string) {
	s.Pos = Pos{n.Line, n.Column}
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.fail(n, path, "expected true, false, a fraction between 0 and 1, or a CEL expression, got %s", kindName(n))
		return
	}
	switch n.Tag {
	case "!!bool":
		s.Expr = strings.ToLower(n.Value)
	case "!!int", "!!float":
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil || f < 0 || f > 1 {
			d.fail(n, path, "expected a fraction between 0 and 1, got %s", n.Value)
			return
		}
		s.Expr = strconv.FormatFloat(f, 'g', -1, 64)
		if !strings.ContainsAny(s.Expr, ".e") {
			s.Expr += ".0" // CEL: 1 is an int, 1.0 the fraction
		}
	default:
		s.Expr = n.Value
	}
}

// TraceExport is where and how spans leave the gateway, from either
// tracing block.
type TraceExport struct {
	// URL is the collector's base URL, scheme and host (http://host:4317).
	URL string
	// Path is the OTLP/HTTP path; gRPC export ignores it.
	Path     string
	Protocol string // grpc | http
	Headers  map[string]string
}

// Export returns where config.tracing sends spans.
func (t *Tracing) Export() TraceExport {
	e := TraceExport{URL: t.OTLPEndpoint, Path: t.Path, Protocol: t.OTLPProtocol, Headers: t.Headers}
	if u, err := url.Parse(t.OTLPEndpoint); err == nil && u.Path != "" && u.Path != "/" {
		if e.Path == "" {
			e.Path = u.Path
		}
		u.Path, u.RawPath = "", ""
		e.URL = u.String()
	}
	return e.withDefaults()
}

// Export returns where frontendPolicies.tracing sends spans.
func (t *FrontendTracing) Export() TraceExport {
	u := t.Host
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return TraceExport{URL: strings.TrimSuffix(u, "/"), Path: t.Path, Protocol: t.Protocol}.withDefaults()
}

func (e TraceExport) withDefaults() TraceExport {
	if e.Protocol == "" {
		e.Protocol = "grpc"
	}
	if e.Path == "" {
		e.Path = "/v1/traces"
	}
	return e
}

func (d *decoder) checkTracing(f *File) {
	if f.Config != nil && f.Config.Tracing != nil {
		t := f.Config.Tracing
		const p = "config.tracing"
		if t.OTLPEndpoint == "" {
			d.failAt(t.Pos, p, "missing required key \"otlpEndpoint\"")
		} else {
			d.checkCollectorURL(t.Pos, p+".otlpEndpoint", t.OTLPEndpoint)
		}
		d.checkTraceProtocol(t.Pos, p+".otlpProtocol", t.OTLPProtocol)
	}
	if fp := f.FrontendPolicies; fp != nil && fp.Tracing != nil {
		t := fp.Tracing
		const p = "frontendPolicies.tracing"
		if t.Host == "" {
			if !d.hasErrorUnder(p) {
				d.failAt(t.Pos, p, "missing required key \"host\"")
			}
		} else {
			d.checkCollectorURL(t.Pos, p+".host", t.Export().URL)
		}
		d.checkTraceProtocol(t.Pos, p+".protocol", t.Protocol)
	}
}

func (d *decoder) checkCollectorURL(p Pos, path, raw string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		d.failAt(p, path, "invalid collector address: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		d.failAt(p, path, "expected an http:// or https:// collector URL, got %q", raw)
	case u.Host == "":
		d.failAt(p, path, "the collector URL %q has no host", raw)
	}
}

func (d *decoder) checkTraceProtocol(p Pos, path, proto string) {
	switch proto {
	case "", "grpc", "http":
	default:
		d.failAt(p, path, "expected grpc or http, got %q", proto)
	}
}
