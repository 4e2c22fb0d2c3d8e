package gateway

// The fast front of HTTP/1.1 binds, plain or TLS.
//
// net/http's server is most of what a request costs the gateway: a bare
// net/http reverse proxy measures about a third of nginx's requests per
// second on this kind of machine, a native fasthttp one about nine tenths.
// So a bind (HTTP, or HTTPS: the gateway offers only HTTP/1.1 over TLS)
// whose routes all send to plain-HTTP backends under policies that only
// read a request's head (fastFrontPolicies) is served by fasthttp: for
// GET, HEAD and OPTIONS without a body, the request is read by fasthttp,
// run through the same routing, policies, access log and metrics as on
// net/http (serveRequest, over an http.Request built from the head), and
// sent upstream by fasthttp's client: as fasthttp read it when nothing in
// it is the gateway's to change (fastCall.send). Every other request
// — a body, an upgrade, HTTP/1.0, anything unusual in its head — hands
// the connection to the bind's net/http server for the rest of its life
// (package handoff), so the hardened net/http path still reads everything
// that is not plain.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/tailgate-dev/tailgate/internal/gateway/handoff"
	"github.com/tailgate-dev/tailgate/internal/pipe"
)

// fastFrontPolicies are the policies the fast front runs: each reads only
// the request's head and answers, if it answers, with a short response.
// rewrites: the policy may change the request it lets through, so that
// request is rebuilt from the http.Request it changed, never forwarded as
// fasthttp read it (fastCall.send).
var fastFrontPolicies = map[string]struct{ rewrites bool }{
	"localRateLimit":         {},
	"cors":                   {},
	"jwtAuth":                {},
	"authorization":          {},
	"requestHeaderModifier":  {rewrites: true},
	"responseHeaderModifier": {},
	"timeout":                {},
	"directResponse":         {},
	"requestRedirect":        {},
	"urlRewrite":             {rewrites: true},
}

// markFastFront decides, for every bind of s, whether the fast front may
// serve it.
func (s *snapshot) markFastFront() {
	if s.tracing != nil {
		return // spans are begun and ended by the net/http path only
	}
	for _, bt := range s.binds {
		bt.fastFront = !bt.connect && !bt.internal && bt.fastFrontRoutes()
	}
}

func (bt *bindTable) fastFrontRoutes() bool {
	for _, lt := range bt.listeners {
		if !fastFrontSet(lt.policies) {
			return false
		}
		for _, e := range lt.routes {
			rt := e.route
			if rt.a2a || !fastFrontSet(rt.policies) {
				return false
			}
			for _, wb := range rt.backends {
				if hb, ok := wb.Backend.(*hostBackend); !ok || hb.fast == nil || !fastFrontSet(wb.policies) {
					return false
				}
			}
		}
	}
	return true
}

func fastFrontSet(s interface{ Keys() []string }) bool {
	for _, k := range s.Keys() {
		if _, ok := fastFrontPolicies[k]; !ok {
			return false
		}
	}
	return true
}

// fastClients are the fast front's upstream clients, one per backend
// address, shared by every snapshot so a reload keeps warm connections.
type fastClients struct {
	mu sync.Mutex
	m  map[string]*fasthttp.HostClient
}

func (fc *fastClients) get(addr string) *fasthttp.HostClient {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if c, ok := fc.m[addr]; ok {
		return c
	}
	if fc.m == nil {
		fc.m = map[string]*fasthttp.HostClient{}
	}
	c := &fasthttp.HostClient{
		Addr: addr,
		Dial: func(addr string) (net.Conn, error) { return upstreamDialer.Dial("tcp", addr) },
		// Wait for a connection rather than fail when all are busy.
		MaxConns:            1024,
		MaxConnWaitTimeout:  10 * time.Second,
		MaxIdleConnDuration: 90 * time.Second,
		// The gateway sends the path it judged, byte for byte, and no
		// User-Agent the caller did not send (as ReverseProxy).
		DisablePathNormalizing:   true,
		NoDefaultUserAgentHeader: true,
		// Responses are streamed to the caller as they arrive (SSE,
		// downloads), never held whole in memory.
		StreamResponseBody: true,
		// Response heads up to 64 KiB (net/http's transport allows 1 MiB;
		// this buffer is held only while a request is in flight).
		ReadBufferSize: 64 << 10,
		// GET, HEAD and OPTIONS are safe to resend: once, when a reused
		// connection turned out closed.
		MaxIdemponentCallAttempts: 2,
	}
	fc.m[addr] = c
	return c
}

func (fc *fastClients) closeIdle() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, c := range fc.m {
		c.CloseIdleConnections()
	}
}

// serveFast serves bs with the fast front: fasthttp on the bind's
// listener, net/http on the connections it hands off.
func (g *Gateway) serveFast(bs *bindServer) {
	httpLn := pipe.NewListener(bs.ln.Addr())
	bs.srv = g.httpServer(bs)
	bs.fast = &fasthttp.Server{
		Handler:        g.fastHandler(bs),
		ReadBufferSize: 2 * handoff.MaxHead,
		// A head must arrive within the time net/http gives one.
		ReadTimeout: bs.srv.ReadHeaderTimeout,
		IdleTimeout: bs.srv.IdleTimeout,
		// Headers are the upstream's or the gateway's, as on net/http:
		// no Server or Content-Type of fasthttp's own.
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		CloseOnShutdown:               true,
		Logger:                        slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	fl := &fastListener{gated: &gatedListener{Listener: bs.ln, g: g, bs: bs}, to: httpLn}
	g.servers[bs.port] = bs
	go bs.srv.Serve(httpLn)
	go bs.fast.Serve(fl)
}

// fastListener yields the connections the fast front serves; one to a
// bind a reload took off the fast front goes straight to net/http. A TLS
// connection is served like a plain one: its handshake happens on the
// fast front's first read, and a handoff gives net/http the decrypted
// stream (its requests get r.TLS from authConn.tlsState).
type fastListener struct {
	gated *gatedListener
	to    *pipe.Listener
}

func (l *fastListener) Accept() (net.Conn, error) {
	for {
		c, err := l.gated.Accept()
		if err != nil {
			return nil, err
		}
		servable := func() bool {
			bt := l.gated.g.snap.Load().binds[l.gated.bs.port]
			return bt != nil && bt.fastFront
		}
		if !servable() {
			go handoff.Give(l.to, c)
			continue
		}
		return handoff.NewConn(c, l.to, servable), nil
	}
}

func (l *fastListener) Close() error {
	l.to.Close()
	return l.gated.Close()
}

func (l *fastListener) Addr() net.Addr { return l.gated.Addr() }

// authConnOf finds the authConn under the wrappers a connection may be
// in (TLS, handoff).
func authConnOf(c net.Conn) *authConn {
	for {
		switch x := c.(type) {
		case *authConn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
}

// fastHandler is the fast front's request handler.
func (g *Gateway) fastHandler(bs *bindServer) fasthttp.RequestHandler {
	bind := "bind/" + strconv.Itoa(bs.port)
	slow := fasthttpadaptor.NewFastHTTPHandler(g.handler(bs))
	served := g.metrics.fastFront.WithLabelValues(bind)
	return func(ctx *fasthttp.RequestCtx) {
		s := g.snap.Load()
		if bt := s.binds[bs.port]; bt == nil || !bt.fastFront {
			// A reload between the head's check and now: the request
			// (bodiless) takes the net/http path through an adaptor,
			// which finds the connection as net/http's requests do.
			if ac := authConnOf(ctx.Conn()); ac != nil {
				ctx.SetUserValue(connKey, ac)
			}
			slow(ctx)
			return
		}
		served.Inc()
		ac := authConnOf(ctx.Conn())
		r, plain, err := fastRequest(ctx, ac)
		if err != nil {
			// What net/http answers a target it cannot parse.
			ctx.Response.Header.SetConnectionClose()
			ctx.Error("400 Bad Request", http.StatusBadRequest)
			return
		}
		f := &fastCall{ctx: ctx, w: fastWriter{ctx: ctx}, plainHead: plain}
		g.serveRequest(bs, bind, s, ac, &f.w, r, f)
		if !f.sent {
			f.w.commit(nil)
		}
	}
}

// fastRequest is the http.Request net/http would have read from the head
// fasthttp read: the head passed handoff's checks, so both read it alike.
// plain reports that the head has none of the headers the gateway owns or
// drops on the way upstream (gatewayHeaders), in any spelling.
func fastRequest(ctx *fasthttp.RequestCtx, ac *authConn) (r *http.Request, plain bool, err error) {
	target := string(ctx.Request.Header.RequestURI())
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false, err
	}
	plain = true
	raw := ctx.Request.Header.RawHeaders()
	// The values are slices of one copy of the head's header lines, and
	// each key's slice of values a capped window of one array: three
	// allocations for any number of headers (a second value of a key
	// copies its slice out on append).
	text := string(raw)
	lines := bytes.Count(raw, crlf) + 1
	h := make(http.Header, lines)
	values := make([]string, 0, lines)
	var host string
	for at := 0; at < len(raw); {
		end := bytes.Index(raw[at:], crlf)
		if end < 0 {
			end = len(raw)
		} else {
			end += at
		}
		line := raw[at:end]
		start := at
		at = end + 2
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue // cannot happen: handoff checked every line
		}
		key := canonicalKey(line[:colon])
		if gatewayHeaders[key] {
			plain = false
		}
		v := strings.Trim(text[start+colon+1:end], " \t")
		if key == "Host" {
			host = v
			continue
		}
		if old, ok := h[key]; ok {
			h[key] = append(old, v)
			continue
		}
		values = append(values, v)
		n := len(values)
		h[key] = values[n-1 : n : n]
	}
	// As net/http: Pragma: no-cache stands for Cache-Control: no-cache
	// when the latter is absent (RFC 7234 §5.4).
	if p, ok := h["Pragma"]; ok && len(p) > 0 && p[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	r = &http.Request{
		Method:     methodString(ctx.Method()),
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		RequestURI: target,
		Close:      ctx.Request.Header.ConnectionClose(),
	}
	if ac != nil {
		r.RemoteAddr = ac.remoteAddr()
		r.TLS = ac.tlsState()
	}
	// The context is Background's: serveRequest adds the request's own
	// values, and a bodiless request has nothing to cancel early.
	return r, plain, nil
}

// gatewayHeaders are the request headers the gateway changes before a
// request goes upstream: hop-by-hop ones (dropped; Connection may name
// more), forwarding ones (setForwarding's) and Pragma (net/http adds
// Cache-Control for Pragma: no-cache).
var gatewayHeaders = func() map[string]bool {
	m := map[string]bool{"Pragma": true}
	for k := range hopHeaders {
		m[k] = true
	}
	for _, k := range forwardingHeaders {
		m[k] = true
	}
	return m
}()

// onlyReads reports whether no policy of s may change a request it lets
// through (fastFrontPolicies).
func onlyReads(s interface{ Keys() []string }) bool {
	for _, k := range s.Keys() {
		if p, ok := fastFrontPolicies[k]; !ok || p.rewrites {
			return false
		}
	}
	return true
}

func methodString(m []byte) string {
	switch string(m) {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodHead:
		return http.MethodHead
	case http.MethodOptions:
		return http.MethodOptions
	}
	return string(m)
}

// fastWriter is the http.ResponseWriter of answers the gateway makes on
// the fast front (refusals, redirects, direct responses): short, so they
// are buffered in fasthttp's response. As on net/http, the head is
// committed at the first Write (or when the handler returns), so a body
// without a Content-Type is sniffed.
type fastWriter struct {
	ctx       *fasthttp.RequestCtx
	h         http.Header
	status    int
	committed bool
}

func (w *fastWriter) Header() http.Header {
	if w.h == nil {
		w.h = make(http.Header, 4)
	}
	return w.h
}

func (w *fastWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *fastWriter) Write(b []byte) (int, error) {
	w.commit(b)
	w.ctx.Response.AppendBody(b)
	return len(b), nil
}

// commit copies the status and headers into fasthttp's response, once;
// first is the start of the body, for sniffing.
func (w *fastWriter) commit(first []byte) {
	if w.committed {
		return
	}
	w.committed = true
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if _, typed := w.h["Content-Type"]; !typed && len(first) > 0 {
		w.Header().Set("Content-Type", http.DetectContentType(first))
	}
	resp := &w.ctx.Response
	resp.SetStatusCode(w.status)
	for k, vs := range w.h {
		if k == "Content-Length" {
			continue // fasthttp counts the body it holds
		}
		for _, v := range vs {
			resp.Header.Add(k, v)
		}
	}
}

// fastCall sends a request of the fast front to a plain-HTTP backend.
type fastCall struct {
	ctx *fasthttp.RequestCtx
	w   fastWriter // the request's writer: headers policies set
	// plainHead: the head has no header in gatewayHeaders (fastRequest);
	// readOnly: no policy of the request's may change it (onlyReads).
	// With both, the request fasthttp read goes upstream itself (send).
	plainHead, readOnly bool
	// sent: the upstream's answer is in ctx.Response (or an error
	// answer was written through w).
	sent bool
}

// send proxies r to be with fasthttp's client when be is a plain-HTTP
// host backend, and reports whether it did. The response body streams to
// the caller after the handler returns; the access log line is written
// when it has (or failed).
func (f *fastCall) send(g *Gateway, st *requestState, r *http.Request, be Backend, bind string, start time.Time) bool {
	hb, ok := be.(*hostBackend)
	// OPTIONS goes through ReverseProxy (its answer is buffered by
	// fastWriter): fasthttp's client would add Content-Length: 0.
	if !ok || hb.fast == nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return false
	}
	f.sent = true
	ri, sw := &st.ri, &st.sw
	uri := r.URL.RequestURI()
	var req *fasthttp.Request
	in := &f.ctx.Request.Header
	if f.plainHead && f.readOnly && !ri.backendHost && uri == string(in.RequestURI()) && r.Host == string(in.Host()) {
		// Nothing to take out and nothing rewritten: the request goes
		// upstream as fasthttp read it (its lines in the client's order
		// and spelling), with the gateway's forwarding headers added.
		// It costs no copy of the head, which rebuilding it from r did.
		req = &f.ctx.Request
		for _, k := range forwardingHeaders {
			for _, v := range r.Header[k] {
				in.Add(k, v)
			}
		}
	} else {
		req = fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		// Headers go out as they are, each on its own line (fasthttp
		// would merge Cookie headers and manage Host and User-Agent
		// itself).
		req.Header.DisableNormalizing()
		req.Header.DisableSpecialHeader()
		req.SetRequestURI(uri)
		req.Header.SetMethod(r.Method)
		host := r.Host
		if ri.backendHost {
			host = hb.name // urlRewrite authority: auto
		}
		req.Header.Add("Host", host)
		for k, vs := range r.Header {
			if hopHeaders[k] {
				if k == "Te" && len(vs) > 0 && vs[0] == "trailers" {
					req.Header.Add(k, "trailers") // as ReverseProxy: only this one
				}
				continue
			}
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
	}
	resp := fasthttp.AcquireResponse()
	var err error
	if d, ok := r.Context().Deadline(); ok {
		err = hb.fast.DoDeadline(req, resp, d)
		if errors.Is(err, fasthttp.ErrTimeout) {
			// The request's deadline passed: logged in net/http's words.
			err = context.DeadlineExceeded
		}
	} else {
		err = hb.fast.Do(req, resp)
	}
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		upstreamFailed(sw, ri, err)
		return true
	}
	out := &f.ctx.Response
	status := resp.StatusCode()
	out.SetStatusCode(status)
	// fasthttp's client gives keys in canonical form, so hopHeaders is
	// indexed without a copy of the key; headers the upstream names in
	// Connection are hop-by-hop too (as ReverseProxy drops them).
	var named []string
	if v := resp.Header.Peek("Connection"); len(v) > 0 {
		named = connectionTokens([]string{string(v)})
		for i, tok := range named {
			named[i] = http.CanonicalHeaderKey(tok)
		}
	}
	hop := func(k []byte) bool { return hopHeaders[string(k)] || slices.Contains(named, string(k)) }
	if len(sw.after) > 0 || len(f.w.h) > 0 {
		// Headers policies set before the backend answered (cors) come
		// first, the upstream's are added, then responseHeaderModifier
		// and friends apply: net/http's order, on http.Header.
		hh := make(http.Header, resp.Header.Len()+len(f.w.h))
		for k, vs := range f.w.h {
			if k != "Content-Length" {
				hh[k] = append([]string(nil), vs...)
			}
		}
		for k, v := range resp.Header.All() {
			if !hop(k) {
				key := canonicalKey(k)
				hh[key] = append(hh[key], string(v))
			}
		}
		for _, m := range sw.after {
			m.Apply(hh, nil)
		}
		for k, vs := range hh {
			for _, v := range vs {
				out.Header.Add(k, v)
			}
		}
	} else {
		for k, v := range resp.Header.All() {
			if !hop(k) {
				out.Header.AddBytesKV(k, v)
			}
		}
	}
	sw.status = status
	size := resp.Header.ContentLength()
	stream := resp.BodyStream()
	if stream == nil || f.ctx.IsHead() || status == http.StatusNoContent || status == http.StatusNotModified {
		if size >= 0 {
			out.Header.SetContentLength(size)
		}
		out.SkipBody = f.ctx.IsHead()
		resp.CloseBodyStream()
		fasthttp.ReleaseResponse(resp)
		return true
	}
	if size >= 0 && size <= smallBody {
		// A short body is read whole (usually already buffered): the
		// upstream connection goes back to the pool at once.
		buf := copyBuffers.Get()
		_, err := io.CopyBuffer(out.BodyWriter(), stream, buf)
		copyBuffers.Put(buf)
		resp.CloseBodyStream()
		fasthttp.ReleaseResponse(resp)
		if err != nil {
			// The answer's head is out of our hands but not yet sent:
			// replace it with a 502 rather than send a cut body.
			out.Reset()
			ri.upstreamErr = err
			f.w.status, f.w.h = http.StatusBadGateway, nil
			http.Error(&f.w, http.StatusText(http.StatusBadGateway), http.StatusBadGateway)
			sw.status = http.StatusBadGateway
			return true
		}
		sw.bytes = int64(size)
		return true
	}
	if size < 0 {
		size = -1 // chunked to the caller, flushed chunk by chunk
	}
	st.finishLater = true
	finish := func() { g.finish(bind, r, sw, ri, start) }
	out.SetBodyStream(&fastBody{r: stream, resp: resp, sw: sw, finish: finish, left: int64(size)}, size)
	return true
}

// smallBody is the largest upstream body with a known length the fast
// front reads whole before answering; longer or unknown-length bodies
// are streamed.
const smallBody = 64 << 10

// fastBody is an upstream body as fasthttp's server streams it to the
// caller; closing it releases the upstream response and writes the
// access log line.
type fastBody struct {
	r      io.Reader
	resp   *fasthttp.Response
	sw     *statusWriter
	finish func()
	once   sync.Once
	// left is what a body of known length still has to deliver; -1 for
	// unknown.
	left int64
}

func (b *fastBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.sw.bytes += int64(n)
	if b.left >= 0 {
		b.left -= int64(n)
		if b.left == 0 && err == nil {
			// fasthttp's server stops reading at the length; the client
			// reuses the upstream connection only after the stream
			// itself reported its end, which costs no network read now.
			var one [1]byte
			if m, end := b.r.Read(one[:]); m == 0 && end == io.EOF {
				err = io.EOF
			}
		}
	}
	return n, err
}

func (b *fastBody) Close() error {
	b.once.Do(func() {
		b.resp.CloseBodyStream()
		fasthttp.ReleaseResponse(b.resp)
		b.finish()
	})
	return nil
}

// hopHeaders are not forwarded either way (RFC 9110 §7.6.1), as
// httputil.ReverseProxy drops them.
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

var crlf = []byte("\r\n")

// commonKeys are canonical header names by the spellings clients send
// most, so most keys cost no allocation.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Length", "Content-Type", "Cookie", "Date",
		"Etag", "Expires", "Host", "If-Match", "If-Modified-Since", "If-None-Match",
		"Last-Modified", "Location", "Origin", "Pragma", "Referer", "Server", "Set-Cookie",
		"Te", "Traceparent", "Tracestate", "Transfer-Encoding", "Upgrade", "User-Agent", "Vary",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
		"Access-Control-Request-Method", "Access-Control-Request-Headers", "Keep-Alive",
		"Accept-Ranges", "Age", "Content-Encoding", "Cf-Ray", "Sec-Fetch-Mode", "Sec-Fetch-Site",
		"Sec-Fetch-Dest", "Priority", "Upgrade-Insecure-Requests",
	} {
		m[k] = k
		m[strings.ToLower(k)] = k
	}
	return m
}()

// canonicalKey is http.CanonicalHeaderKey of k.
func canonicalKey(k []byte) string {
	if c, ok := commonKeys[string(k)]; ok {
		return c
	}
	return http.CanonicalHeaderKey(string(k))
}
