package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// serveHTTP handles one HTTP request on the proxy port: CONNECT opens a
// tunnel, an absolute URI is forwarded, anything else is not a proxy request.
func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.begin() {
		writeRefusal(w, refuse(ReasonProxyClosed, "tailgate: the run ended"))
		return
	}
	defer p.wg.Done()
	switch {
	case r.Method == http.MethodConnect:
		p.serveConnect(w, r)
	case r.URL.IsAbs() && r.URL.Host != "":
		p.serveForward(w, r)
	default:
		ev := Event{Time: time.Now(), Protocol: ProtocolHTTP, Method: r.Method, Status: http.StatusBadRequest}
		ref := refuse(ReasonUnsupported, "tailgate: this is a proxy; send CONNECT host:port or an absolute URI (GET http://host/path)")
		writeRefusal(w, ref)
		p.record(ev, ref)
	}
}

// serveConnect opens an HTTP CONNECT tunnel. The target is dialled before
// answering, so a refusal is a proper HTTP response the client can show.
func (p *Proxy) serveConnect(w http.ResponseWriter, r *http.Request) {
	ev := Event{Time: time.Now(), Protocol: ProtocolConnect}
	host, port, ok := connectTarget(r)
	if !ok {
		ref := refuse(ReasonBadRequest, fmt.Sprintf("tailgate: bad CONNECT line %q: want CONNECT host:port HTTP/1.1", r.RequestURI))
		ev.Host = r.RequestURI
		p.refuseHTTP(w, ev, ref)
		return
	}
	ev.Host, ev.Port = host, port
	upstream, resolved, ref := p.open(r.Context(), host, port)
	ev.Resolved = resolved
	if name, _, err := normalizeHost(host); err == nil {
		ev.Host = name
	}
	if ref != nil {
		p.refuseHTTP(w, ev, ref)
		return
	}
	defer upstream.Close()

	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		ev.Error = fmt.Sprintf("hijack client connection: %v", err)
		p.record(ev, nil)
		return
	}
	// Use the raw TCP connection for the tunnel (the sniffed byte is long
	// consumed), so the kernel can splice.
	raw := c
	if sc, ok := c.(*sniffedConn); ok && !sc.hasFirst {
		raw = sc.Conn
	}
	if !p.trackConn(raw) {
		raw.Close()
		p.record(ev, refuse(ReasonProxyClosed, "tailgate: the run ended"))
		return
	}
	defer p.untrackConn(raw)
	ev.Status = http.StatusOK
	if _, err := io.WriteString(raw, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		ev.Error = fmt.Sprintf("answer CONNECT: %v", err)
		p.record(ev, nil)
		return
	}
	var prefix []byte
	if n := brw.Reader.Buffered(); n > 0 {
		prefix, _ = brw.Reader.Peek(n)
	}
	up, down, err := p.tunnel(raw, upstream, prefix)
	ev.BytesUp, ev.BytesDown = up, down
	if err != nil && p.ctx.Err() == nil {
		ev.Error = err.Error()
	}
	p.record(ev, nil)
}

// connectTarget reads host and port from an authority-form CONNECT line.
func connectTarget(r *http.Request) (string, uint16, bool) {
	if r.URL == nil || r.URL.Host == "" || r.URL.Path != "" || strings.HasPrefix(r.RequestURI, "/") {
		return "", 0, false
	}
	host, portStr, err := net.SplitHostPort(r.URL.Host)
	if err != nil || host == "" {
		return "", 0, false
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return "", 0, false
	}
	return host, uint16(port), true
}

// forwardState carries one forwarded request's diagnostics through the
// shared ReverseProxy.
type forwardState struct {
	mu       sync.Mutex
	resolved netip.Addr
	ref      *Refusal
}

type forwardKey struct{}

// serveForward forwards an absolute-URI request over a pooled tailnet
// connection to its target.
func (p *Proxy) serveForward(w http.ResponseWriter, r *http.Request) {
	ev := Event{Time: time.Now(), Protocol: ProtocolHTTP, Method: r.Method, Host: r.URL.Hostname()}
	var port uint64 = 80
	switch r.URL.Scheme {
	case "http":
	case "https":
		port = 443
	default:
		ref := refuse(ReasonUnsupported, fmt.Sprintf("tailgate: scheme %q is not proxied; use http, https or CONNECT", r.URL.Scheme))
		p.refuseHTTP(w, ev, ref)
		return
	}
	if ps := r.URL.Port(); ps != "" {
		var err error
		if port, err = strconv.ParseUint(ps, 10, 16); err != nil || port == 0 {
			ref := refuse(ReasonBadRequest, fmt.Sprintf("tailgate: bad port %q", ps))
			p.refuseHTTP(w, ev, ref)
			return
		}
	}
	ev.Port = uint16(port)
	name, _, ref := p.rules.check(ev.Host, ev.Port)
	ev.Host = name
	if ref != nil {
		p.refuseHTTP(w, ev, ref)
		return
	}

	st := &forwardState{}
	ctx := context.WithValue(r.Context(), forwardKey{}, st)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			c := info.Conn
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			if rc, ok := c.(*resolvedConn); ok {
				st.mu.Lock()
				st.resolved = rc.resolved
				st.mu.Unlock()
			}
		},
	})
	body := &countingReader{r: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = body
	}
	cw := &countingWriter{ResponseWriter: w}
	defer func() {
		// Also runs when ReverseProxy aborts a broken response with a panic.
		st.mu.Lock()
		ev.Resolved, ref = st.resolved, st.ref
		st.mu.Unlock()
		if e := recover(); e != nil {
			ev.Error = "the target's response broke off"
			defer panic(e)
		}
		ev.BytesUp, ev.BytesDown, ev.Status = body.n.Load(), cw.n, cw.status
		p.record(ev, ref)
	}()
	p.forward.ServeHTTP(cw, r.WithContext(ctx))
}

// newForwarder builds the ReverseProxy used for absolute-URI requests; its
// transport dials only through the rule-checked tailnet path.
func (p *Proxy) newForwarder() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Transport: p.transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The absolute URI names the target; a differing Host header
			// must not redirect the request (RFC 9112 section 3.2.2).
			pr.Out.Host = ""
			for k := range pr.Out.Header {
				if strings.HasPrefix(k, "Proxy-") {
					delete(pr.Out.Header, k)
				}
			}
		},
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var ref *Refusal
			if !errors.As(err, &ref) {
				ref = refuse(ReasonDialFailed, fmt.Sprintf("tailgate: forwarding to %s through the tailnet failed: %v", r.URL.Host, err))
			}
			if p.ctx.Err() != nil {
				ref = refuse(ReasonProxyClosed, "tailgate: the run ended")
			}
			if st, _ := r.Context().Value(forwardKey{}).(*forwardState); st != nil {
				st.mu.Lock()
				st.ref = ref
				st.mu.Unlock()
			}
			writeRefusal(w, ref)
		},
	}
}

// countingReader counts request body bytes; the transport may still be
// reading when the handler records its event, hence the atomic.
type countingReader struct {
	r io.ReadCloser
	n atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// countingWriter counts response body bytes and keeps the status; Unwrap
// lets ReverseProxy flush and hijack (for upgrades) through it.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// refuseHTTP answers a refused HTTP request with the refusal and records
// it, with the status it answered.
func (p *Proxy) refuseHTTP(w http.ResponseWriter, ev Event, ref *Refusal) {
	ev.Status = ref.HTTPStatus()
	writeRefusal(w, ref)
	p.record(ev, ref)
}
