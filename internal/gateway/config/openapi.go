package config

// MCPOpenAPI is an MCP target of type openapi: the HTTP API at host
// (host:port or an http(s) URL; port overrides the URL's), described by
// an OpenAPI 3 document whose operations the gateway serves as tools.
// The document is read and checked when the config is compiled.
type MCPOpenAPI struct {
	Pos    Pos            `yaml:"-"`
	Schema *OpenAPISchema `yaml:"schema,required"`
	Host   string         `yaml:"host,required"`
	Port   int            `yaml:"port"`
	// Path is accepted by agentgateway's schema but not used for openapi
	// targets: the document's servers[0].url gives the path prefix.
	Path string `yaml:"path"`

	Backend Unsupported `yaml:"backend"`
}

// OpenAPISchema is where the document is: inline (a string of JSON or
// YAML), {file: path} or {url: ...} — agentgateway's FileInlineOrRemote,
// the same shape as jwks.
type OpenAPISchema = JWKSSource

func (d *decoder) checkOpenAPI(o *MCPOpenAPI, path string) {
	if o.Path != "" {
		d.failAt(o.Pos, path+".path", "not used by openapi targets: the document's servers[0].url gives the path prefix")
	}
	if s := o.Schema; s != nil && s.URL != "" {
		d.failAt(s.Pos, path+".schema.url", "not supported by tailgate yet (use file: or an inline document)")
	}
}
