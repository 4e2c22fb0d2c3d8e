package httppolicy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// ExtAuthz asks an HTTP authorization service about each request. A 2xx
// answer lets the request through and captures metadata for rules as
// extauthz.<key>; any other answer is returned to the client as is
// (status, body, headers). When the service cannot be reached, the
// failure mode decides.
type ExtAuthz struct {
	// BaseURL is the service, e.g. http://127.0.0.1:9000.
	BaseURL string
	// Path computes the request path (CEL, request phase); nil means the
	// original path and query.
	Path *cel.Expression
	// AddRequestHeaders are CEL values sent as extra headers.
	AddRequestHeaders map[string]*cel.Expression
	// Metadata are CEL values (AuthzResponse phase) exposed as extauthz.*.
	Metadata map[string]*cel.Expression
	// IncludeRequestHeaders are copied from the request; empty means only
	// Authorization, as agentgateway does for HTTP.
	IncludeRequestHeaders []string
	// IncludeResponseHeaders are copied from an allowing answer into the
	// request sent to the backend.
	IncludeResponseHeaders []string
	// FailOpen lets requests through when the service is unreachable.
	FailOpen bool
	// DenyStatus is the status when the service is unreachable and
	// FailOpen is false; 0 means 403.
	DenyStatus int
	// Redirect computes where to send the client (302) instead of the
	// service's 401 or 403 (CEL, request phase); nil passes the answer on.
	Redirect *cel.Expression
	// Body computes the check request's body (CEL, request phase); nil
	// sends none.
	Body *cel.Expression
	// Cache keeps answers (extauthzcache.go); nil asks every time.
	Cache  *ExtAuthzCache
	Client *http.Client
}

// ExtAuthzOutcome is the service's decision on one request.
type ExtAuthzOutcome struct {
	Allowed bool
	// Status, Header and Body are the denial to send to the client.
	Status int
	Header http.Header
	Body   []byte
	// Metadata is extauthz.* for later rules.
	Metadata map[string]any
	// UpstreamHeader holds the IncludeResponseHeaders of an allowing answer.
	UpstreamHeader http.Header
	// Reason: "allowed", "denied by service", "service unavailable" (+
	// whether the failure mode allowed it), "metadata error".
	Reason string
}

// Check decides on r, from the cache when it holds an answer for r,
// otherwise by calling the service. vars are the request-phase variables.
func (e *ExtAuthz) Check(ctx context.Context, r *http.Request, vars cel.Vars) ExtAuthzOutcome {
	if e.Cache == nil {
		return e.call(ctx, r, vars)
	}
	k, ok := e.Cache.key(vars)
	if !ok {
		return e.call(ctx, r, vars)
	}
	if out, hit := e.Cache.get(k); hit {
		return out
	}
	out := e.call(ctx, r, vars)
	e.Cache.put(k, vars, out)
	return out
}

// call asks the service.
func (e *ExtAuthz) call(ctx context.Context, r *http.Request, vars cel.Vars) ExtAuthzOutcome {
	path := r.URL.RequestURI()
	if e.Path != nil {
		p, err := e.Path.EvalString(vars)
		if err != nil {
			return e.unavailable(fmt.Errorf("path expression: %w", err))
		}
		path = p
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var reqBody io.Reader
	if e.Body != nil {
		b, err := checkBody(e.Body, vars)
		if err != nil {
			return e.unavailable(fmt.Errorf("body expression: %w", err))
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, e.BaseURL+path, reqBody)
	if err != nil {
		return e.unavailable(err)
	}
	include := e.IncludeRequestHeaders
	if len(include) == 0 {
		include = []string{"Authorization"}
	}
	for _, h := range include {
		if h == ":authority" || strings.EqualFold(h, "host") {
			req.Host = r.Host
			continue
		}
		for _, v := range r.Header.Values(h) {
			req.Header.Add(h, v)
		}
	}
	for name, x := range e.AddRequestHeaders {
		v, err := x.EvalString(vars)
		if err != nil {
			return e.unavailable(fmt.Errorf("header %s expression: %w", name, err))
		}
		switch name {
		case ":authority":
			req.Host = v
		case ":method":
			req.Method = v
		case ":path":
			return e.unavailable(errors.New("set the path with protocol.http.path"))
		default:
			req.Header.Set(name, v)
		}
	}
	client := e.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return e.unavailable(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		h := resp.Header.Clone()
		for _, hop := range []string{"Connection", "Content-Length", "Transfer-Encoding", "Keep-Alive", "Date", "Server"} {
			h.Del(hop)
		}
		return ExtAuthzOutcome{Status: resp.StatusCode, Header: h, Body: body, Reason: "denied by service"}
	}
	out := ExtAuthzOutcome{Allowed: true, Reason: "allowed"}
	if len(e.Metadata) > 0 {
		rv := cel.Vars{}
		for k, v := range vars {
			rv[k] = v
		}
		rv["response"] = map[string]any{"code": int64(resp.StatusCode), "headers": flatHeaders(resp.Header), "body": string(body)}
		out.Metadata = map[string]any{}
		for k, x := range e.Metadata {
			v, err := x.Native(rv)
			if err != nil {
				// A metadata value that cannot be computed is left out: rules
				// that read it see a missing key and error, which counts
				// against the caller (an allow does not allow, a deny denies).
				continue
			}
			out.Metadata[k] = v
		}
	}
	if len(e.IncludeResponseHeaders) > 0 {
		out.UpstreamHeader = http.Header{}
		for _, h := range e.IncludeResponseHeaders {
			for _, v := range resp.Header.Values(h) {
				out.UpstreamHeader.Add(h, v)
			}
		}
	}
	return out
}

// checkBody is the body expression's value: a string or bytes as they
// are, anything else as JSON (agentgateway's value_as_byte_or_json).
func checkBody(x *cel.Expression, vars cel.Vars) ([]byte, error) {
	v, err := x.Native(vars)
	if err != nil {
		return nil, err
	}
	switch t := v.(type) {
	case string:
		return []byte(t), nil
	case []byte:
		return t, nil
	}
	return json.Marshal(v)
}

func (e *ExtAuthz) unavailable(err error) ExtAuthzOutcome {
	if e.FailOpen {
		return ExtAuthzOutcome{Allowed: true, Reason: "service unavailable, failure mode allow: " + err.Error()}
	}
	status := e.DenyStatus
	if status == 0 {
		status = http.StatusForbidden
	}
	return ExtAuthzOutcome{Status: status, Body: []byte("external authorization failed\n"), Reason: "service unavailable: " + err.Error()}
}

// FlatHeaders is the CEL view of headers: lower-case names, values of a
// repeated header joined with ",".
func FlatHeaders(h http.Header) map[string]string { return flatHeaders(h) }

func flatHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, vs := range h {
		lk, v := FlatHeader(k, vs)
		out[lk] = v
	}
	return out
}

// FlatHeader is one header as FlatHeaders shows it: its name in lower
// case and its values joined with ",".
func FlatHeader(name string, values []string) (string, string) {
	lk, ok := lowerHeaderNames[name]
	if !ok {
		lk = strings.ToLower(name)
	}
	return lk, strings.Join(values, ",")
}

// lowerHeaderNames are common canonical header names in lower case, so
// flatHeaders, which runs for every request a rule looks at, need not
// allocate them.
var lowerHeaderNames = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Date", "Forwarded", "Host",
		"If-Modified-Since", "If-None-Match", "Last-Event-Id", "Mcp-Protocol-Version", "Mcp-Session-Id",
		"Origin", "Pragma", "Referer", "Server", "Set-Cookie", "Traceparent", "Transfer-Encoding",
		"Upgrade", "User-Agent", "Www-Authenticate", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
	} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

var extAuthz = module("extAuthz", ExternalAuthorization,
	func(p *config.RoutePolicies) *config.ExtAuthz { return p.ExtAuthz },
	compileExtAuthz)

// compileExtAuthz compiles the CEL values of the HTTP protocol: path and
// addRequestHeaders in the request phase, metadata in the AuthzResponse
// phase.
func compileExtAuthz(e *config.ExtAuthz, path string, c Compiler) Policy {
	base := e.Host
	client := c.HTTPClient()
	if sock, ok := strings.CutPrefix(base, "unix:"); ok {
		// A Unix socket (agentgateway's Tailscale example asks tailscaled's
		// LocalAPI this way): every call dials the socket.
		sock = c.Rel(sock)
		base = "http://local"
		client = &http.Client{Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		}}
	} else if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	out := &ExtAuthz{
		BaseURL:               strings.TrimSuffix(base, "/"),
		IncludeRequestHeaders: e.IncludeRequestHeaders,
		Client:                client,
	}
	if f := e.FailureMode; f != nil {
		out.FailOpen, out.DenyStatus = f.Allow, f.DenyWithStatus
	}
	if e.Cache != nil {
		out.Cache = compileExtAuthzCache(e.Cache, path+".cache", c)
	}
	h := e.Protocol.HTTP
	if h == nil {
		return out
	}
	if h.Body != "" {
		out.Body = c.Expression(cel.Request, h.Pos, path+".protocol.http.body", h.Body)
	}
	out.IncludeResponseHeaders = h.IncludeResponseHeaders
	if h.Path != "" {
		out.Path = c.Expression(cel.Request, h.Pos, path+".protocol.http.path", h.Path)
	}
	if h.Redirect != "" {
		out.Redirect = c.Expression(cel.Request, h.Pos, path+".protocol.http.redirect", h.Redirect)
	}
	if len(h.AddRequestHeaders) > 0 {
		out.AddRequestHeaders = map[string]*cel.Expression{}
		for k, v := range h.AddRequestHeaders {
			out.AddRequestHeaders[k] = c.Expression(cel.Request, h.Pos, path+".protocol.http.addRequestHeaders."+k, v)
		}
	}
	if len(h.Metadata) > 0 {
		out.Metadata = map[string]*cel.Expression{}
		for k, v := range h.Metadata {
			out.Metadata[k] = c.Expression(cel.AuthzResponse, h.Pos, path+".protocol.http.metadata."+k, v)
		}
	}
	return out
}

// Run asks the service. A refusal is returned to the client as the
// service gave it; an allowing answer's metadata becomes extauthz.* and
// its included headers go to the backend.
func (e *ExtAuthz) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	out := e.Check(r.Context(), r, x.Vars())
	if !out.Allowed {
		out = e.redirect(out, x.Vars())
		for k, vs := range out.Header {
			w.Header()[k] = vs
		}
		x.Refuse("extAuthz", out.Reason)
		w.WriteHeader(out.Status)
		w.Write(out.Body)
		return false
	}
	x.Authorized(out.Metadata)
	for k, vs := range out.UpstreamHeader {
		r.Header[k] = vs
	}
	return true
}
