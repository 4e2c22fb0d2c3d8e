package openapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// maxAnswerBytes bounds an API answer read into a tool result.
const maxAnswerBytes = 4 << 20

// Server is an MCP server whose tools call the API at base (scheme and
// host:port, e.g. http://127.0.0.1:8080) with client.
func (a *API) Server(name string, base *url.URL, client *http.Client) *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: name, Version: "openapi"}, nil)
	for _, t := range a.Tools {
		c := &caller{tool: t, base: base, prefix: a.Prefix, client: client}
		s.AddTool(&sdk.Tool{Name: t.Name, Title: t.Title, Description: t.Description, InputSchema: t.InputSchema}, c.call)
	}
	return s
}

type caller struct {
	tool   Tool
	base   *url.URL
	prefix string
	client *http.Client
}

// args are a call's arguments, grouped as the input schema groups them.
type args struct {
	Path   map[string]any  `json:"path"`
	Query  map[string]any  `json:"query"`
	Header map[string]any  `json:"header"`
	Body   json.RawMessage `json:"body"`
}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

// protectedHeaders are never taken from arguments: they would let a model
// change how the request is framed or where it goes.
var protectedHeaders = map[string]bool{"Host": true, "Content-Type": true, "Content-Length": true, "Transfer-Encoding": true, "Accept": true}

func (c *caller) call(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
	var a args
	if raw := req.Params.Arguments; len(raw) > 0 {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber() // query and path numbers keep every digit
		if err := d.Decode(&a); err != nil {
			return nil, invalidParams("tool %s: arguments: %v", c.tool.Name, err)
		}
	}
	hreq, err := c.request(ctx, a)
	if err != nil {
		return nil, invalidParams("tool %s: %v", c.tool.Name, err)
	}
	resp, err := c.client.Do(hreq)
	if err != nil {
		return nil, apiError("tool %s: calling the API: %v", c.tool.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, apiError("tool %s: reading the API's answer: %v", c.tool.Name, err)
	}
	if len(body) > maxAnswerBytes {
		return nil, apiError("tool %s: the API's answer is larger than %d bytes", c.tool.Name, maxAnswerBytes)
	}
	if resp.StatusCode >= 500 {
		return nil, apiError("tool %s: the API answered %s: %s", c.tool.Name, resp.Status, truncate(string(body), 1024))
	}
	return result(resp.StatusCode, body), nil
}

// request builds the HTTP request for one call.
func (c *caller) request(ctx context.Context, a args) (*http.Request, error) {
	var missing []string
	path := pathParam.ReplaceAllStringFunc(c.tool.path, func(m string) string {
		name := m[1 : len(m)-1]
		v, ok := a.Path[name]
		if !ok || v == nil {
			missing = append(missing, name)
			return m
		}
		s, ok := scalar(v)
		if !ok {
			missing = append(missing, name)
			return m
		}
		// One segment: "/" and ".." in a value cannot walk the API's paths.
		return url.PathEscape(s)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("path parameter %s: missing or not a string, number or boolean", strings.Join(missing, ", "))
	}
	u := *c.base
	u.RawPath = strings.TrimRight(c.prefix, "/") + path
	u.Path, _ = url.PathUnescape(u.RawPath)
	u.RawQuery = query(a.Query)
	var body io.Reader
	contentType := ""
	if len(a.Body) > 0 && string(a.Body) != "null" {
		if c.tool.octetStream {
			var s string
			if err := json.Unmarshal(a.Body, &s); err != nil {
				return nil, fmt.Errorf("body: expected a base64 string")
			}
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("body: %w", err)
			}
			body, contentType = bytes.NewReader(b), "application/octet-stream"
		} else {
			body, contentType = bytes.NewReader(a.Body), "application/json"
		}
	}
	r, err := http.NewRequestWithContext(ctx, c.tool.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	r.Header.Set("Accept", "application/json")
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	for name, v := range a.Header {
		s, ok := v.(string)
		if !ok || !c.tool.headers[name] || protectedHeaders[http.CanonicalHeaderKey(name)] {
			continue // only the operation's own headers, as strings
		}
		if strings.ContainsAny(s, "\r\n\x00") {
			return nil, fmt.Errorf("header %s: invalid value", name)
		}
		r.Header.Set(name, s)
	}
	return r, nil
}

// invalidParams is the JSON-RPC error for arguments a call cannot be
// made with.
func invalidParams(format string, args ...any) error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf(format, args...)}
}

// apiError is a call the API could not answer: JSON-RPC's internal error
// (a plain Go error would reach the client with code 0, which JSON-RPC
// does not define).
func apiError(format string, args ...any) error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf(format, args...)}
}

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case float64, bool:
		return fmt.Sprint(x), true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

// query encodes query arguments in key order: scalars as key=value, null
// as the bare key, lists as repeated keys; objects are left out.
func query(q map[string]any) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	add := func(k string, v any) {
		var s string
		if v != nil {
			var ok bool
			if s, ok = scalar(v); !ok {
				return
			}
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(k))
		if v != nil {
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(s))
		}
	}
	for _, k := range keys {
		if list, ok := q[k].([]any); ok {
			for _, v := range list {
				add(k, v)
			}
			continue
		}
		add(k, q[k])
	}
	return b.String()
}

// result is the tool result for an answer below 500.
func result(status int, body []byte) *sdk.CallToolResult {
	var structured any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	switch err := d.Decode(&v); {
	case err != nil || d.More():
		structured = map[string]any{"code": status, "message": string(body)}
	default:
		switch v.(type) {
		case map[string]any, nil:
			structured = v
		default:
			structured = map[string]any{"data": v}
		}
	}
	text, _ := json.Marshal(structured)
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(text)}}, StructuredContent: structured}
}
