package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tailgate-dev/tailgate/internal/gateway/httppolicy"
)

// Backend is where a route sends a request once every policy passed:
// an HTTP upstream (`backends[].host`) or an MCP backend (`backends[].mcp`,
// package mcp), which reads the caller's CEL variables through the
// request's requestInfo to apply mcpAuthorization.
type Backend interface {
	// Name labels the backend in logs and metrics, e.g. "127.0.0.1:8080".
	Name() string
	http.Handler
}

// hostBackend reverse-proxies to one HTTP upstream.
type hostBackend struct {
	name  string
	proxy *httputil.ReverseProxy
	// fast sends the fast front's requests (fastfront.go); nil when the
	// backend needs more than plain HTTP (TLS, retries, A2A).
	fast *fasthttp.HostClient
}

func (b *hostBackend) Name() string                                     { return b.name }
func (b *hostBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) { b.proxy.ServeHTTP(w, r) }

// upstreamDialer dials every backend, from h1pool, the Transport and the
// fast front.
var upstreamDialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}

// newTransport is the one upstream transport of a Gateway, shared by all
// snapshots so a reload keeps warm connections.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil, // a gateway never goes through the host's HTTP_PROXY
		DialContext:         upstreamDialer.DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		// A proxy passes the caller's Accept-Encoding through; asking
		// for gzip on its own would make it decompress what it relays.
		DisableCompression:    true,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
	}
}

// hostBackend is the backend for host under a route's policies (pol may
// be nil): backendTLS makes it speak TLS with that config, retry resends
// failed requests. Backends with the same host and settings are shared.
func (c *compiler) hostBackend(host string, pol *httppolicy.Set) (Backend, error) {
	var tlsCfg *tls.Config
	var retry *httppolicy.RetrySpec
	a2a := false
	if pol != nil {
		tlsCfg, retry, a2a = pol.BackendTLS, pol.Retry, pol.A2A
	}
	cacheKey := fmt.Sprintf("%s|%p|%p|%t", host, tlsCfg, retry, a2a)
	if b, ok := c.backends[cacheKey]; ok {
		return b, nil
	}
	raw := host
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid backend host %q: want host:port or http://host:port", host)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("invalid backend host %q: scheme must be http or https", host)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("invalid backend host %q: a port is required", host)
	}
	target := &url.URL{Scheme: u.Scheme, Host: u.Host}
	var transport http.RoundTripper = c.deps.h1pool
	if tlsCfg != nil {
		target.Scheme = "https"
		if base, ok := c.deps.transport.(*http.Transport); ok {
			t := base.Clone()
			t.TLSClientConfig = tlsCfg
			transport = t
		}
	}
	if retry != nil {
		transport = &retryTransport{next: transport, spec: retry}
	}
	b := &hostBackend{name: u.Host}
	b.proxy = newProxy(transport, func(*http.Request) *url.URL { return target })
	if target.Scheme == "http" && retry == nil && !a2a && c.deps.fast != nil {
		b.fast = c.deps.fast.get(u.Host)
	}
	if a2a {
		ab := newA2ABackend(b)
		c.backends[cacheKey] = ab
		return ab, nil
	}
	c.backends[cacheKey] = b
	return b, nil
}

// newProxy reverse-proxies to the URL targetOf picks for each request
// (scheme and host only), keeping the caller's Host and the gateway's
// forwarding headers; a failed exchange is a 502 (504 on a timeout).
func newProxy(transport http.RoundTripper, targetOf func(*http.Request) *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := targetOf(pr.In)
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // keep the caller's Host, as agentgateway does
			if ri := infoFrom(pr.In.Context()); ri != nil && ri.backendHost {
				pr.Out.Host = target.Host // urlRewrite authority: auto
			}
			// ReverseProxy drops Forwarded and X-Forwarded-* before
			// Rewrite; the inbound values are already the gateway's own
			// (setForwarding), so they are put back as they are.
			for _, k := range forwardingHeaders {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
		},
		Transport:  transport,
		BufferPool: copyBuffers,
		// 0: buffered writes for ordinary responses; ReverseProxy still
		// flushes every write of text/event-stream and unknown-length
		// (streamed) responses, which is what SSE and MCP need.
		FlushInterval: 0,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			ri := infoFrom(r.Context())
			// A request body that could not be read (malformed chunking,
			// a client that stalled) is the client's fault, not the
			// backend's: 400 or 408, never 502.
			if status, reason, ok := ri.bodyFault(); ok {
				ri.denyReason = reason
				http.Error(w, http.StatusText(status), status)
				return
			}
			upstreamFailed(w, ri, err)
		},
	}
}

// upstreamFailed answers a request whose backend exchange failed: 504
// when it ran out of time, else 502; the error goes to the access log.
func upstreamFailed(w http.ResponseWriter, ri *requestInfo, err error) {
	status := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, fasthttp.ErrTimeout) {
		status = http.StatusGatewayTimeout
	}
	if ri != nil {
		ri.upstreamErr = err
	}
	http.Error(w, http.StatusText(status), status)
}

// copyBuffers are the 32 KiB buffers ReverseProxy copies response bodies
// through: without a pool it allocates one per request, which was three
// quarters of the bytes the gateway allocated under load.
var copyBuffers httputil.BufferPool = &bufferPool{}

type bufferPool struct{ p sync.Pool }

// The pool holds array pointers: putting a slice back would allocate a
// header for it each time.
func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[32 << 10]byte); ok {
		return b[:]
	}
	return new([32 << 10]byte)[:]
}

func (bp *bufferPool) Put(b []byte) {
	if cap(b) != 32<<10 {
		return
	}
	bp.p.Put((*[32 << 10]byte)(b[:cap(b)]))
}

// retryTransport resends a request whose answer has one of the retry
// codes, or that failed before an answer, when its body can be replayed
// (none, or GetBody set). The last answer is returned as it is.
type retryTransport struct {
	next http.RoundTripper
	spec *httppolicy.RetrySpec
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	for attempt := 0; attempt < t.spec.Attempts; attempt++ {
		if err == nil && !t.spec.Codes[resp.StatusCode] {
			return resp, nil
		}
		if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
			return resp, err
		}
		if req.Context().Err() != nil {
			return resp, err
		}
		if t.spec.Backoff > 0 {
			select {
			case <-time.After(t.spec.Backoff):
			case <-req.Context().Done():
				return resp, err
			}
		}
		next := req.Clone(req.Context())
		if req.GetBody != nil {
			body, gerr := req.GetBody()
			if gerr != nil {
				return resp, err
			}
			next.Body = body
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		resp, err = t.next.RoundTrip(next)
	}
	return resp, err
}
