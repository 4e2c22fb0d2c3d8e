package httppolicy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// The traffic policies, with agentgateway's semantics
// (crates/agentgateway/src/http/filters.rs, delay.rs, retry.rs).

var directResponse = module("directResponse", Respond,
	func(p *config.RoutePolicies) *config.DirectResponse { return p.DirectResponse },
	func(dr *config.DirectResponse, path string, c Compiler) Policy {
		out := &directAnswer{}
		for i, r := range dr.Responses {
			rp := path
			if dr.Conditional {
				rp = fmt.Sprintf("%s.conditional[%d]", path, i)
			}
			a := answer{status: r.Status, body: []byte(r.Body)}
			if r.Condition != "" {
				a.when = c.Expression(cel.Request, r.Pos, rp+".condition", r.Condition)
			}
			if r.BodyExpression != "" {
				a.bodyExpr = c.Expression(cel.Request, r.Pos, rp+".bodyExpression", r.BodyExpression)
			}
			for name, src := range r.Headers {
				a.headers = append(a.headers, namedExpr{name, c.Expression(cel.Request, r.Pos, rp+".headers."+name, src)})
			}
			out.answers = append(out.answers, a)
		}
		return out
	})

type namedExpr struct {
	name string
	x    *cel.Expression
}

type answer struct {
	when     *cel.Expression // nil: always
	status   int
	body     []byte
	bodyExpr *cel.Expression
	headers  []namedExpr
}

// directAnswer answers with the first response whose condition holds; a
// condition that errors does not hold. No match forwards the request.
type directAnswer struct{ answers []answer }

func (d *directAnswer) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	for _, a := range d.answers {
		if a.when != nil {
			if ok, err := a.when.EvalBool(x.Vars()); err != nil || !ok {
				continue
			}
		}
		body := a.body
		if a.bodyExpr != nil {
			v, err := a.bodyExpr.Native(x.Vars())
			if err != nil {
				Deny(w, x, "directResponse", "bodyExpression failed", http.StatusInternalServerError, "internal error")
				return false
			}
			body = valueBytes(v)
		}
		for _, h := range a.headers {
			if v, err := h.x.EvalString(x.Vars()); err == nil {
				w.Header().Set(h.name, v)
			}
		}
		x.Note("directResponse")
		w.WriteHeader(a.status)
		w.Write(body)
		return false
	}
	return true
}

// valueBytes is agentgateway's value_as_byte_or_json: strings and bytes
// as they are, anything else as JSON.
func valueBytes(v any) []byte {
	switch t := v.(type) {
	case string:
		return []byte(t)
	case []byte:
		return t
	}
	return []byte(fmt.Sprint(jsonString(v)))
}

var requestRedirect = module("requestRedirect", Respond,
	func(p *config.RoutePolicies) *config.RequestRedirect { return p.RequestRedirect },
	func(rr *config.RequestRedirect, _ string, _ Compiler) Policy { return &redirect{rr} })

type redirect struct{ cfg *config.RequestRedirect }

// Run answers with Location built from the request's URL: scheme,
// authority and path changed as configured (filters.rs RequestRedirect).
func (p *redirect) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p.cfg.Scheme != "" {
		scheme = p.cfg.Scheme
	}
	host := rewriteAuthority(p.cfg.Authority, r.Host, scheme, p.cfg.Scheme != "")
	path := rewritePath(p.cfg.Path, x.PathPrefix(), r.URL.Path)
	loc := (&url.URL{Scheme: scheme, Host: host, Path: path, RawQuery: r.URL.RawQuery}).String()
	status := p.cfg.Status
	if status == 0 {
		status = http.StatusFound
	}
	x.Note("requestRedirect")
	w.Header().Set("Location", loc)
	w.WriteHeader(status)
	return false
}

var urlRewrite = module("urlRewrite", RequestRewrite,
	func(p *config.RoutePolicies) *config.URLRewrite { return p.URLRewrite },
	func(u *config.URLRewrite, _ string, _ Compiler) Policy { return &rewrite{u} })

type rewrite struct{ cfg *config.URLRewrite }

// Run changes the path and Host the backend receives. authority: auto
// sends the backend's own host:port; none (and no authority) keeps the
// caller's Host, which is tailgate's default too.
func (p *rewrite) Run(_ http.ResponseWriter, r *http.Request, x Exchange) bool {
	if a := p.cfg.Authority; a != nil {
		if a.Auto {
			x.UseBackendHost()
		} else {
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			r.Host = rewriteAuthority(a, r.Host, scheme, false)
		}
	}
	if p.cfg.Path != nil {
		np := rewritePath(p.cfg.Path, x.PathPrefix(), r.URL.Path)
		r.URL.Path, r.URL.RawPath = np, ""
	}
	return true
}

// rewriteAuthority is filters.rs rewrite_host.
func rewriteAuthority(a *config.AuthorityRewrite, orig, scheme string, schemeSet bool) string {
	if a == nil || a.Auto || a.None {
		return orig
	}
	host, port, err := net.SplitHostPort(orig)
	if err != nil {
		host, port = orig, ""
	}
	switch {
	case a.Full != "":
		return a.Full
	case a.Host != "":
		if schemeSet || port == "" {
			return a.Host
		}
		if p, _ := strconv.Atoi(port); defaultPort(scheme, p) {
			return a.Host
		}
		return net.JoinHostPort(a.Host, port)
	default:
		if defaultPort(scheme, a.Port) {
			return host
		}
		return net.JoinHostPort(host, strconv.Itoa(a.Port))
	}
}

func defaultPort(scheme string, p int) bool {
	return (scheme == "http" && p == 80) || (scheme == "https" && p == 443)
}

// rewritePath is filters.rs rewrite_path: full replaces the path; prefix
// replaces the route's matched pathPrefix, segment-wise.
func rewritePath(p *config.PathRewrite, matched, orig string) string {
	switch {
	case p == nil:
		return orig
	case p.Full != nil:
		if *p.Full == "" {
			return "/"
		}
		return *p.Full
	}
	pfx := strings.TrimRight(matched, "/")
	rest := strings.TrimPrefix(orig, pfx)
	np := *p.Prefix
	if !strings.HasSuffix(np, "/") && rest != "" && !strings.HasPrefix(rest, "/") {
		np += "/"
	}
	if strings.HasSuffix(np, "/") && strings.HasPrefix(rest, "/") {
		np = np[:len(np)-1]
	}
	np += rest
	if np == "" {
		np = "/"
	}
	return np
}

var requestMirror = module("requestMirror", Forward,
	func(p *config.RoutePolicies) *config.RequestMirror { return p.RequestMirror },
	func(m *config.RequestMirror, path string, c Compiler) Policy {
		target, err := backendURL(m.Backend.Host)
		if err != nil {
			c.Fail(m.Pos, path+".backend.host", err)
			return nil
		}
		return &mirror{target: target, fraction: m.Percentage.V, client: c.HTTPClient()}
	})

// mirrorBodyLimit is the largest body copied to a mirror; a larger
// request is forwarded but not mirrored.
const mirrorBodyLimit = 1 << 20

type mirror struct {
	target   *url.URL
	fraction float64
	client   *http.Client
}

// Run sends a copy of the request, as it will be forwarded, to the mirror
// and does not wait for it; the mirror's answer is discarded.
func (m *mirror) Run(_ http.ResponseWriter, r *http.Request, x Exchange) bool {
	if m.fraction <= 0 || (m.fraction < 1 && rand.Float64() >= m.fraction) {
		return true
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, mirrorBodyLimit+1))
		r.Body = readCloser{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
		if err != nil || len(b) > mirrorBodyLimit {
			x.Note("mirror skipped: body too large")
			return true
		}
		body = b
	}
	u := *m.target
	u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
	req, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return true
	}
	req.Header = r.Header.Clone()
	req.Host = r.Host
	go func() {
		ctx, cancel := context.WithTimeout(req.Context(), 30*time.Second)
		defer cancel()
		if resp, err := m.client.Do(req.WithContext(ctx)); err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
	}()
	return true
}

type readCloser struct {
	io.Reader
	io.Closer
}

// backendURL parses host:port or http(s)://host:port.
func backendURL(host string) (*url.URL, error) {
	raw := host
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Port() == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("invalid backend host %q: want host:port or http(s)://host:port", host)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}
