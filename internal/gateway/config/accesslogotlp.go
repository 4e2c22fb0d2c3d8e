package config

// AccessLogOTLP is frontendPolicies.accessLog.otlp: every request is also
// exported as an OpenTelemetry log record to the collector at Host
// (host:port or a URL), over OTLP/gRPC (default) or OTLP/HTTP (Path,
// default /v1/logs). Filter and Fields, when unset, are the access log's
// own (agentgateway's OtlpLoggingConfig).
type AccessLogOTLP struct {
	Pos      Pos              `yaml:"-"`
	Host     string           `yaml:"host"`
	Path     string           `yaml:"path"`
	Protocol string           `yaml:"protocol"` // grpc (default) | http
	Filter   string           `yaml:"filter"`
	Fields   *AccessLogFields `yaml:"fields"`

	Policies Unsupported `yaml:"policies"`
	Service  Unsupported `yaml:"service"`
	Backend  Unsupported `yaml:"backend"`
}

// AccessLogFields are fields added (CEL, after the response) and built-in
// fields removed.
type AccessLogFields struct {
	Add    OrderedExprs `yaml:"add"`
	Remove []string     `yaml:"remove"`
}

// Export returns where the records are sent.
func (o *AccessLogOTLP) Export() TraceExport {
	e := (&FrontendTracing{Host: o.Host, Path: o.Path, Protocol: o.Protocol}).Export()
	if o.Path == "" {
		e.Path = "/v1/logs"
	}
	return e
}

func (d *decoder) checkAccessLogOTLP(o *AccessLogOTLP, path string) {
	if o.Host == "" {
		if !d.hasErrorUnder(path) {
			d.failAt(o.Pos, path, "missing required key \"host\"")
		}
		return
	}
	d.checkCollectorURL(o.Pos, path+".host", o.Export().URL)
	d.checkTraceProtocol(o.Pos, path+".protocol", o.Protocol)
}
