// Package openapi serves an HTTP API described by an OpenAPI 3 document
// as MCP tools: agentgateway's `openapi` MCP target
// (crates/agentgateway/src/mcp/upstream/openapi), for an MCP backend to
// federate like any other target.
//
// # Tools
//
// Every operation is one tool. Its name is the operationId (required),
// its description the operation's description (else its summary, else the
// name) and its title the summary's first 64 bytes. Its input schema is an
// object with up to four members, each present only when the operation
// has something for it:
//
//	path    {<name>: schema}  path parameters, substituted into the template
//	query   {<name>: schema}  query parameters
//	header  {<name>: schema}  header parameters
//	body    schema            the application/json request body (or a
//	                          base64 string for application/octet-stream)
//
// A group is required when one of its parameters is; body when the
// request body is. Parameters declared on the path item apply to each of
// its operations unless the operation redeclares them. Local references
// (`#/components/...`) are resolved into the schemas; a reference that
// leads back into itself becomes `{}` at the point of recursion.
//
// # Calls
//
// A call is one HTTP request to the API's base URL (the target's host)
// plus the path prefix of the document's single `servers` entry: path
// values are percent-encoded as single segments, query values are
// strings, numbers, booleans, null (the bare key) or lists of those
// (repeated keys), headers are sent only if the operation declares them
// (never Host, Content-Type, Content-Length, Transfer-Encoding or Accept),
// the body is sent as JSON. The answer is the tool's result: a JSON
// object as structuredContent (another JSON value as {"data": value},
// text as {"code": status, "message": text}) and its serialization as
// the text content — a 4xx too, so the model sees why. A 5xx, or an API
// that cannot be reached, is a JSON-RPC error.
package openapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/yamljson"
)

// API is a parsed OpenAPI document: its operations as tools.
type API struct {
	// Prefix is the path of the document's server URL ("" for none),
	// put in front of every operation's path.
	Prefix string
	Tools  []Tool
}

// Tool is one operation.
type Tool struct {
	Name        string
	Title       string
	Description string
	// InputSchema is the JSON Schema of the tool's arguments.
	InputSchema map[string]any

	method string
	path   string
	// headers are the header parameters the operation declares: only
	// those are sent.
	headers map[string]bool
	// octetStream: the body is base64 in the arguments, bytes on the wire.
	octetStream bool
}

// maxSchemaNodes bounds the schemas after references are resolved, so a
// document whose references multiply (A uses B twice, B uses C twice...)
// is refused instead of expanding without end.
const maxSchemaNodes = 200_000

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// Parse reads an OpenAPI 3 document, JSON or YAML.
func Parse(doc []byte) (*API, error) {
	root, err := decode(doc)
	if err != nil {
		return nil, err
	}
	if v, _ := root["openapi"].(string); !strings.HasPrefix(v, "3.") {
		if root["swagger"] != nil {
			return nil, errors.New("swagger 2.0 documents are not supported; convert to OpenAPI 3")
		}
		return nil, errors.New(`not an OpenAPI 3 document (no "openapi: 3.x")`)
	}
	p := &parser{root: root}
	api := &API{}
	if api.Prefix, err = serverPrefix(root["servers"]); err != nil {
		return nil, err
	}
	paths, ok := root["paths"].(map[string]any)
	if !ok && root["paths"] != nil {
		return nil, errors.New("paths: expected an object")
	}
	names := map[string]string{}
	for _, path := range sortedKeys(paths) {
		item, ok := paths[path].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("paths.%s: expected an object", path)
		}
		if _, ok := item["$ref"]; ok {
			return nil, fmt.Errorf("paths.%s: a $ref path item is not supported", path)
		}
		shared, err := p.parameters(item["parameters"], fmt.Sprintf("paths.%s.parameters", path), true)
		if err != nil {
			return nil, err
		}
		for _, m := range methods {
			op, ok := item[m]
			if !ok {
				continue
			}
			where := fmt.Sprintf("paths.%s.%s", path, m)
			t, err := p.operation(op, where, path, m, shared)
			if err != nil {
				return nil, err
			}
			if prev, dup := names[t.Name]; dup {
				return nil, fmt.Errorf("%s: operationId %q is also used by %s", where, t.Name, prev)
			}
			names[t.Name] = where
			api.Tools = append(api.Tools, t)
		}
	}
	return api, nil
}

// decode reads JSON or YAML into plain JSON values (map[string]any,
// []any, string, json.Number, bool, nil).
func decode(doc []byte) (map[string]any, error) {
	var v any
	if t := bytes.TrimSpace(doc); len(t) > 0 && t[0] == '{' {
		d := json.NewDecoder(bytes.NewReader(t))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
	} else {
		y, err := yamljson.Decode(doc)
		if err != nil {
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		// Through JSON, so numbers come out as json.Number, as from a
		// JSON document.
		b, err := json.Marshal(y)
		if err != nil {
			return nil, fmt.Errorf("invalid document: %w", err)
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("expected an object at the top level")
	}
	return m, nil
}

// serverPrefix is the path of the one server URL: "https://api/v3/" and
// "/v3" both give "/v3". Several servers are ambiguous and refused.
func serverPrefix(v any) (string, error) {
	servers, _ := v.([]any)
	switch len(servers) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", fmt.Errorf("servers: %d servers; only one is supported (its path prefixes every operation)", len(servers))
	}
	s, _ := servers[0].(map[string]any)
	raw, _ := s["url"].(string)
	p := raw
	if i := strings.Index(raw, "://"); i >= 0 || strings.HasPrefix(raw, "//") {
		// An absolute URL: the path starts after the host.
		rest := raw[i+3:]
		if i < 0 {
			rest = raw[2:]
		}
		p = ""
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			p = rest[j:]
		}
	}
	if j := strings.IndexAny(p, "?#"); j >= 0 {
		p = p[:j]
	}
	p = strings.TrimRight(p, "/")
	if p != "" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

type parser struct {
	root  map[string]any
	nodes int
}

type param struct {
	name, in    string
	required    bool
	schema      map[string]any
	description string
}

func (p param) key() string {
	if p.in == "header" {
		return "header\x00" + strings.ToLower(p.name)
	}
	return p.in + "\x00" + p.name
}

// parameters reads a parameters list. Cookie parameters are skipped on a
// path item and refused on an operation, as agentgateway does.
func (p *parser) parameters(v any, where string, pathLevel bool) ([]param, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected a list", where)
	}
	var out []param
	for i, e := range list {
		at := fmt.Sprintf("%s[%d]", where, i)
		m, err := p.deref(e, at)
		if err != nil {
			return nil, err
		}
		pr := param{}
		pr.name, _ = m["name"].(string)
		pr.in, _ = m["in"].(string)
		pr.required, _ = m["required"].(bool)
		pr.description, _ = m["description"].(string)
		if pr.name == "" {
			return nil, fmt.Errorf("%s: name is required", at)
		}
		switch pr.in {
		case "path", "query", "header":
		case "cookie":
			if pathLevel {
				continue
			}
			return nil, fmt.Errorf("%s: cookie parameter %q is not supported", at, pr.name)
		default:
			return nil, fmt.Errorf("%s: in must be path, query, header or cookie, got %q", at, pr.in)
		}
		if _, ok := m["content"]; ok {
			return nil, fmt.Errorf("%s: parameter %q uses content; only schema is supported", at, pr.name)
		}
		s, err := p.schema(m["schema"], at+".schema")
		if err != nil {
			return nil, err
		}
		if pr.description != "" {
			s["description"] = pr.description
		}
		pr.schema = s
		out = append(out, pr)
	}
	return out, nil
}

func (p *parser) operation(v any, where, path, method string, shared []param) (Tool, error) {
	op, ok := v.(map[string]any)
	if !ok {
		return Tool{}, fmt.Errorf("%s: expected an object", where)
	}
	t := Tool{method: strings.ToUpper(method), path: path, headers: map[string]bool{}}
	t.Name, _ = op["operationId"].(string)
	if t.Name == "" {
		return Tool{}, fmt.Errorf("%s: operationId is required (it is the tool's name)", where)
	}
	summary, _ := op["summary"].(string)
	t.Description, _ = op["description"].(string)
	if t.Description == "" {
		t.Description = summary
	}
	if t.Description == "" {
		t.Description = t.Name
	}
	if summary != "" {
		t.Title = truncate(summary, 64)
	}
	own, err := p.parameters(op["parameters"], where+".parameters", false)
	if err != nil {
		return Tool{}, err
	}
	// The operation's own parameters replace the path item's of the same
	// name and location.
	var params []param
	index := map[string]int{}
	for _, pr := range append(append([]param(nil), shared...), own...) {
		if i, ok := index[pr.key()]; ok {
			params[i] = pr
			continue
		}
		index[pr.key()] = len(params)
		params = append(params, pr)
	}
	props := map[string]any{}
	var required []string
	if rb, ok := op["requestBody"]; ok {
		body, req, octet, err := p.requestBody(rb, where+".requestBody")
		if err != nil {
			return Tool{}, err
		}
		if body != nil {
			props["body"] = body
			t.octetStream = octet
			if req {
				required = append(required, "body")
			}
		}
	}
	for _, in := range []string{"header", "path", "query"} {
		sub := map[string]any{}
		var subReq []string
		for _, pr := range params {
			if pr.in != in {
				continue
			}
			sub[pr.name] = pr.schema
			if pr.required {
				subReq = append(subReq, pr.name)
			}
			if in == "header" {
				t.headers[pr.name] = true
			}
		}
		if len(sub) == 0 {
			continue
		}
		group := map[string]any{"type": "object", "properties": sub, "required": nonNil(subReq)}
		props[in] = group
		if len(subReq) > 0 {
			required = append(required, in)
		}
	}
	for _, pr := range params {
		if pr.in == "path" && !strings.Contains(path, "{"+pr.name+"}") {
			return Tool{}, fmt.Errorf("%s: path parameter %q is not in the path", where, pr.name)
		}
	}
	t.InputSchema = map[string]any{"type": "object", "properties": props, "required": nonNil(required)}
	return t, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8Start(s[n]) {
		n--
	}
	return s[:n]
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// requestBody is the body's schema: the application/json one, or a
// base64 string for application/octet-stream; nil for other media types
// (the tool then sends no body, as agentgateway does).
func (p *parser) requestBody(v any, where string) (schema map[string]any, required, octet bool, err error) {
	rb, err := p.deref(v, where)
	if err != nil {
		return nil, false, false, err
	}
	required, _ = rb["required"].(bool)
	content, _ := rb["content"].(map[string]any)
	if mt, ok := content["application/json"].(map[string]any); ok {
		if mt["schema"] == nil {
			return nil, false, false, fmt.Errorf("%s.content.application/json: schema is required", where)
		}
		s, err := p.schema(mt["schema"], where+".content.application/json.schema")
		return s, required, false, err
	}
	if _, ok := content["application/octet-stream"]; ok {
		return map[string]any{"type": "string", "format": "byte", "description": "Base64-encoded binary content"}, required, true, nil
	}
	return nil, false, false, nil
}

// deref follows v's $ref (a local JSON pointer) if it has one.
func (p *parser) deref(v any, where string) (map[string]any, error) {
	seen := map[string]bool{}
	for {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: expected an object", where)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, nil
		}
		if seen[ref] {
			return nil, fmt.Errorf("%s: $ref %q refers to itself", where, ref)
		}
		seen[ref] = true
		t, err := p.lookup(ref)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		v = t
	}
}

// lookup resolves a local reference, "#/components/schemas/Pet".
func (p *parser) lookup(ref string) (any, error) {
	ptr, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("$ref %q: only local references (#/...) are supported", ref)
	}
	var cur any = p.root
	for _, tok := range strings.Split(ptr, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("$ref %q: not found", ref)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("$ref %q: not found", ref)
		}
	}
	return cur, nil
}

// schema returns v with every reference resolved, as a new value (the
// document is shared by all operations). No schema at all is `{}`.
func (p *parser) schema(v any, where string) (map[string]any, error) {
	if v == nil {
		return map[string]any{}, nil
	}
	r, err := p.resolve(v, where, nil)
	if err != nil {
		return nil, err
	}
	m, ok := r.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected an object", where)
	}
	return m, nil
}

func (p *parser) resolve(v any, where string, stack []string) (any, error) {
	p.nodes++
	if p.nodes > maxSchemaNodes {
		return nil, fmt.Errorf("%s: schemas expand past %d nodes once references are resolved", where, maxSchemaNodes)
	}
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["$ref"].(string); ok {
			for _, s := range stack {
				if s == ref {
					return map[string]any{}, nil // recursion: accept anything here
				}
			}
			t, err := p.lookup(ref)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			return p.resolve(t, where, append(stack, ref))
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := p.resolve(e, where, stack)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := p.resolve(e, where, stack)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}
