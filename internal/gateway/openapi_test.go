package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// petsDoc is a small OpenAPI 3 document in YAML: path, query, header and
// body parameters, a path-level parameter, a $ref'd body and a schema
// that refers to itself.
const petsDoc = `
openapi: 3.0.3
info: {title: pets, version: "1"}
servers: [{url: "http://pets.example/api/v3/"}]
components:
  schemas:
    Pet:
      type: object
      required: [name]
      properties:
        name: {type: string}
        parent: {$ref: "#/components/schemas/Pet"}
paths:
  /pets:
    get:
      operationId: listPets
      summary: List pets
      parameters:
      - {name: limit, in: query, schema: {type: integer}}
      - {name: tag, in: query, schema: {type: array, items: {type: string}}}
      - {name: X-Trace, in: header, schema: {type: string}}
      responses: {200: {description: ok}}
    post:
      operationId: createPet
      description: Adds a pet to the store.
      requestBody:
        required: true
        content:
          application/json: {schema: {$ref: "#/components/schemas/Pet"}}
      responses: {201: {description: created}}
  /pets/{petId}:
    parameters:
    - {name: petId, in: path, required: true, description: the pet, schema: {type: string}}
    get:
      operationId: getPet
      responses: {200: {description: ok}}
    delete:
      operationId: deletePet
      responses: {204: {description: gone}}
`

// apiCall is what the API saw of one request.
type apiCall struct {
	method, uri, contentType, trace, other, body string
}

// petsAPI is the HTTP API the document describes.
func petsAPI(t *testing.T) (*httptest.Server, func() apiCall) {
	t.Helper()
	var mu sync.Mutex
	var last apiCall
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		last = apiCall{r.Method, r.URL.RequestURI(), r.Header.Get("Content-Type"), r.Header.Get("X-Trace"), r.Header.Get("X-Other"), string(b)}
		mu.Unlock()
		switch {
		case r.Method == http.MethodDelete:
			http.Error(w, "database down", http.StatusServiceUnavailable)
		case strings.HasSuffix(r.URL.Path, "/missing"):
			http.Error(w, "no such pet", http.StatusNotFound)
		case r.Method == http.MethodGet && r.URL.Path == "/api/v3/pets":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `[{"name":"rex"},{"name":"tom"}]`)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"name":"rex","id":12345678901234567890,"path":%q}`, r.URL.EscapedPath())
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() apiCall { mu.Lock(); defer mu.Unlock(); return last }
}

// startOpenAPIGateway serves petsDoc's operations on api as MCP tools
// (frontConfig is YAML put before binds:) and connects an MCP client.
func startOpenAPIGateway(t *testing.T, api *httptest.Server, frontConfig string) (*testGateway, *sdk.ClientSession) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "pets.yaml"), []byte(petsDoc))
	port := freePort(t)
	cfg := fmt.Sprintf(`%s
binds:
- port: %d
  listeners:
  - routes:
    - backends:
      - mcp:
          targets:
          - name: pets
            openapi:
              schema: {file: %s}
              host: %s
`, frontConfig, port, filepath.Join(dir, "pets.yaml"), hostOf(api))
	g := startGateway(t, cfg, port)
	c := sdk.NewClient(&sdk.Implementation{Name: "openapi-test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: g.url("/mcp"), MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return g, cs
}

func TestOpenAPIOperationsAreListedAsTools(t *testing.T) {
	api, _ := petsAPI(t)
	_, cs := startOpenAPIGateway(t, api, "")
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string]*sdk.Tool{}
	for _, tl := range res.Tools {
		tools[tl.Name] = tl
	}
	if len(tools) != 4 || tools["listPets"] == nil || tools["createPet"] == nil || tools["getPet"] == nil || tools["deletePet"] == nil {
		t.Fatalf("tools = %v", tools)
	}
	if tl := tools["listPets"]; tl.Title != "List pets" || tl.Description != "List pets" {
		t.Errorf("listPets title/description = %q / %q", tl.Title, tl.Description)
	}
	if d := tools["createPet"].Description; d != "Adds a pet to the store." {
		t.Errorf("createPet description = %q", d)
	}
	schema := func(name string) string {
		b, _ := json.Marshal(tools[name].InputSchema)
		return string(b)
	}
	for name, wants := range map[string][]string{
		// The body is the resolved Pet; its self-reference is {} there.
		"createPet": {`"required":["body"]`, `"body":{"properties":{"name":{"type":"string"},"parent":{}},"required":["name"],"type":"object"}`},
		// The path item's parameter, with its description, is required.
		"getPet":    {`"required":["path"]`, `"petId":{"description":"the pet","type":"string"}`},
		"listPets":  {`"query":{"properties":{"limit":{"type":"integer"}`, `"header":{"properties":{"X-Trace":{"type":"string"}}`, `"required":[]`},
		"deletePet": {`"path":{"properties":{"petId"`},
	} {
		s := schema(name)
		for _, w := range wants {
			if !strings.Contains(s, w) {
				t.Errorf("%s input schema lacks %s:\n%s", name, w, s)
			}
		}
	}
}

func callTool(t *testing.T, cs *sdk.ClientSession, name string, args any) (*sdk.CallToolResult, error) {
	t.Helper()
	return cs.CallTool(context.Background(), &sdk.CallToolParams{Name: name, Arguments: args})
}

func TestOpenAPIToolCallsReachTheAPI(t *testing.T) {
	api, last := petsAPI(t)
	_, cs := startOpenAPIGateway(t, api, "")

	// Path values are one segment each: a "/" cannot walk the API.
	res, err := callTool(t, cs, "getPet", map[string]any{"path": map[string]any{"petId": "a/../b"}})
	if err != nil {
		t.Fatal(err)
	}
	if c := last(); c.method != "GET" || c.uri != "/api/v3/pets/a%2F..%2Fb" {
		t.Errorf("API got %s %s", c.method, c.uri)
	}
	// The JSON object answer is the structured result (numbers exact) and
	// its text.
	text := res.Content[0].(*sdk.TextContent).Text
	if res.IsError || !strings.Contains(text, `"id":12345678901234567890`) || !strings.Contains(text, `"name":"rex"`) {
		t.Errorf("getPet result: %+v %s", res, text)
	}
	if m, ok := res.StructuredContent.(map[string]any); !ok || m["name"] != "rex" {
		t.Errorf("structuredContent = %#v", res.StructuredContent)
	}

	res, err = callTool(t, cs, "createPet", map[string]any{"body": map[string]any{"name": "tom"}})
	if err != nil {
		t.Fatal(err)
	}
	if c := last(); c.method != "POST" || c.uri != "/api/v3/pets" || c.contentType != "application/json" || c.body != `{"name":"tom"}` {
		t.Errorf("API got %+v", c)
	}

	// Query lists repeat their key; only declared headers are sent.
	res, err = callTool(t, cs, "listPets", map[string]any{
		"query":  map[string]any{"limit": 5, "tag": []any{"a b", "c"}},
		"header": map[string]any{"X-Trace": "t-1", "X-Other": "smuggled"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := last(); c.uri != "/api/v3/pets?limit=5&tag=a+b&tag=c" || c.trace != "t-1" || c.other != "" {
		t.Errorf("API got %+v", c)
	}
	// A JSON answer that is not an object comes back as {"data": ...}.
	if text := res.Content[0].(*sdk.TextContent).Text; text != `{"data":[{"name":"rex"},{"name":"tom"}]}` {
		t.Errorf("listPets text = %s", text)
	}
}

func TestOpenAPIToolCallErrors(t *testing.T) {
	api, _ := petsAPI(t)
	_, cs := startOpenAPIGateway(t, api, "")

	// A 4xx is a result the model can read.
	res, err := callTool(t, cs, "getPet", map[string]any{"path": map[string]any{"petId": "missing"}})
	if err != nil {
		t.Fatal(err)
	}
	if text := res.Content[0].(*sdk.TextContent).Text; text != `{"code":404,"message":"no such pet\n"}` {
		t.Errorf("404 result = %s", text)
	}
	// A 5xx is an error: JSON-RPC's internal error, not a code JSON-RPC
	// does not define.
	_, err = callTool(t, cs, "deletePet", map[string]any{"path": map[string]any{"petId": "1"}})
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("5xx: err = %v, want one naming 503", err)
	}
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) || werr.Code != jsonrpc.CodeInternalError {
		t.Errorf("5xx: err = %#v, want a JSON-RPC error with code %d", err, jsonrpc.CodeInternalError)
	}
	// A path parameter the call lacks is not sent as "{petId}".
	if _, err := callTool(t, cs, "getPet", map[string]any{}); err == nil || !strings.Contains(err.Error(), "petId") {
		t.Errorf("missing path parameter: err = %v", err)
	}
}

func TestOpenAPITargetRefusesBadDocumentsAtLoad(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, target, want string
	}{
		{"missing file", `schema: {file: nope.json}
              host: localhost:8080`, "openapi.schema: open "},
		{"not YAML", `schema: "openapi: [3"
              host: localhost:8080`, "openapi.schema: invalid YAML"},
		{"swagger 2", `schema: '{"swagger": "2.0", "paths": {}}'
              host: localhost:8080`, "swagger 2.0 documents are not supported"},
		{"no operationId", `schema: '{"openapi": "3.0.0", "paths": {"/a": {"get": {}}}}'
              host: localhost:8080`, "openapi.schema: paths./a.get: operationId is required"},
		{"dangling ref", `schema: '{"openapi": "3.0.0", "paths": {"/a": {"post": {"operationId": "a", "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Gone"}}}}}}}}'
              host: localhost:8080`, `$ref "#/components/schemas/Gone": not found`},
		{"two servers", `schema: '{"openapi": "3.0.0", "servers": [{"url": "/a"}, {"url": "/b"}], "paths": {}}'
              host: localhost:8080`, "servers: 2 servers; only one is supported"},
		{"no operations", `schema: '{"openapi": "3.0.0", "paths": {}}'
              host: localhost:8080`, "the document has no operations"},
		{"bad host", `schema: '{"openapi": "3.0.0", "paths": {"/a": {"get": {"operationId": "a"}}}}'
              host: "ftp://x"`, "openapi.host: invalid host"},
		{"url source", `schema: {url: "http://x/openapi.json"}
              host: localhost:8080`, "openapi.schema.url: not supported by tailgate yet"},
		{"path", `schema: '{"openapi": "3.0.0", "paths": {"/a": {"get": {"operationId": "a"}}}}'
              host: localhost:8080
              path: /api`, "openapi.path: not used by openapi targets"},
		{"wrong type", `schema: {file: x.json}
              host: [localhost]`, "openapi.host: expected a string, got a list"},
		{"unknown key", `schema: {file: x.json}
              host: localhost:8080
              hots: 1`, `openapi.hots: unknown key`},
		{"no schema", `host: localhost:8080`, `openapi: missing required key "schema"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := `binds:
- port: 3000
  listeners:
  - routes:
    - backends:
      - mcp:
          targets:
          - name: api
            openapi:
              ` + tc.target + "\n"
			path := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			err := Validate(path)
			if err == nil {
				t.Fatalf("loaded; want an error with %q", tc.want)
			}
			where := map[string]string{"no schema": "config.yaml:10:15:", "bad host": "config.yaml:10:15:", "path": "config.yaml:10:15:", "wrong type": "config.yaml:11:21:", "unknown key": "config.yaml:12:15:"}[tc.name]
			if where == "" {
				where = "config.yaml:10:23:" // the schema's value
			}
			if msg := err.Error(); strings.Count(msg, "\n") > 0 {
				t.Errorf("one problem, several errors:\n%s", msg)
			} else if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "binds[0].listeners[0].routes[0].backends[0].mcp.targets[0].openapi") || !strings.Contains(msg, where) {
				t.Errorf("error does not name the problem, path and line:\n%s", msg)
			}
		})
	}
}
