// Package api holds the OpenAPI 3.0 document of tailgate's REST API,
// openapi.yaml, the reference for every endpoint, schema and error code.
// The server (internal/api) embeds it from here and serves it as JSON at
// GET /v1/openapi.json; a test there checks that it names every route the
// server answers and every error code it can send.
package api

import _ "embed"

// OpenAPIYAML is openapi.yaml, byte for byte.
//
//go:embed openapi.yaml
var OpenAPIYAML []byte
