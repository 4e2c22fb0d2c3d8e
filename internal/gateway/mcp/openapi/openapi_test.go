package openapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestServerPrefix(t *testing.T) {
	for url, want := range map[string]string{
		"https://petstore.example/api/v3/": "/api/v3",
		"//cdn.example/v2?x=1":             "/v2",
		"/api/v3":                          "/api/v3",
		"api":                              "/api",
		"https://example.com":              "",
		"/":                                "",
	} {
		got, err := serverPrefix([]any{map[string]any{"url": url}})
		if err != nil || got != want {
			t.Errorf("serverPrefix(%q) = %q, %v; want %q", url, got, err, want)
		}
	}
}

func TestOperationParametersOverrideThePathItems(t *testing.T) {
	api, err := Parse([]byte(`
openapi: 3.1.0
paths:
  /items/{id}:
    parameters:
    - {name: id, in: path, required: true, schema: {type: string}}
    - {name: X-Key, in: header, schema: {type: string}}
    - {name: session, in: cookie, schema: {type: string}}
    get:
      operationId: getItem
      summary: "` + strings.Repeat("é", 40) + `"
      parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
      - {name: x-key, in: header, required: true, schema: {type: string, enum: [a]}}
      responses:
        200: {description: ok}
`))
	if err != nil {
		t.Fatal(err)
	}
	tl := api.Tools[0]
	b, _ := json.Marshal(tl.InputSchema)
	s := string(b)
	for _, want := range []string{`"id":{"type":"integer"}`, `"x-key":{"enum":["a"],"type":"string"}`, `"required":["header","path"]`} {
		if !strings.Contains(s, want) {
			t.Errorf("schema lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, "X-Key") || strings.Contains(s, "session") {
		t.Errorf("overridden header or path-level cookie kept:\n%s", s)
	}
	if len(tl.Title) > 64 || !strings.HasPrefix(strings.Repeat("é", 40), tl.Title) {
		t.Errorf("title not cut at 64 bytes on a character boundary: %q", tl.Title)
	}
}

func TestParseRefusesWhatItCannotServe(t *testing.T) {
	// References that multiply: each level uses the next one twice.
	var bomb strings.Builder
	bomb.WriteString(`{"openapi": "3.0.0", "components": {"schemas": {`)
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&bomb, `"S%d": {"type": "object", "properties": {"a": {"$ref": "#/components/schemas/S%d"}, "b": {"$ref": "#/components/schemas/S%d"}}},`, i, i+1, i+1)
	}
	bomb.WriteString(`"S30": {"type": "string"}}}, "paths": {"/x": {"post": {"operationId": "x", "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/S0"}}}}}}}}`)
	for doc, want := range map[string]string{
		bomb.String(): "schemas expand past 200000 nodes",
		`{"openapi": "3.0.0", "paths": {"/x": {"get": {"operationId": "x", "parameters": [{"name": "c", "in": "cookie"}]}}}}`:               `cookie parameter "c" is not supported`,
		`{"openapi": "3.0.0", "paths": {"/x": {"get": {"operationId": "x", "parameters": [{"name": "id", "in": "path"}]}}}}`:                `path parameter "id" is not in the path`,
		`{"openapi": "3.0.0", "paths": {"/x": {"get": {"operationId": "x"}}, "/y": {"get": {"operationId": "x"}}}}`:                         `operationId "x" is also used by paths./x.get`,
		`{"openapi": "3.0.0", "paths": {"/x": {"get": {"operationId": "x", "parameters": [{"$ref": "other.yaml#/p"}]}}}}`:                   "only local references",
		`{"openapi": "3.0.0", "paths": {"/x": {"get": {"operationId": "x", "parameters": [{"name": "q", "in": "query", "content": {}}]}}}}`: "uses content",
		`[1, 2]`: "expected an object at the top level",
	} {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%.60s...) = %v, want an error with %q", doc, err, want)
		}
	}
}
