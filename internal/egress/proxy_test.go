package egress_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/target"
	"github.com/tailgate-dev/tailgate/internal/testhttp"

	"golang.org/x/net/proxy"

	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/egress/egresstest"
	"github.com/tailgate-dev/tailgate/internal/testtcp"
)

// env is one run: a proxy for the "staging" environment over a fake tailnet
// that also knows another environment's host.
type env struct {
	proxy   *egress.Proxy
	addr    netip.AddrPort
	tailnet *egresstest.Tailnet
	app     *httptest.Server // app.internal.example:80 → 100.64.0.5:80
	secure  *httptest.Server // secure.internal.example:443 → 192.0.2.10:443
	pool    *x509.CertPool
}

var (
	appAddr    = netip.MustParseAddr("100.64.0.5")
	secureAddr = netip.MustParseAddr("192.0.2.10")
	otherAddr  = netip.MustParseAddr("100.64.0.9")
	strayAddr  = netip.MustParseAddr("198.51.100.7") // resolves, but no tailnet route
)

// appHandler answers with what it received, so tests can see what the
// proxy forwarded.
func appHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"host":    r.Host,
		"uri":     r.RequestURI,
		"headers": r.Header,
		"body":    string(body),
		"msg":     "Hello from the private app",
	})
}

func newEnv(t testing.TB, mutate ...func(*egress.Options)) *env {
	t.Helper()
	e := &env{tailnet: egresstest.New()}
	e.app = httptest.NewServer(http.HandlerFunc(appHandler))
	t.Cleanup(e.app.Close)
	e.secure = httptest.NewTLSServer(http.HandlerFunc(appHandler))
	t.Cleanup(e.secure.Close)
	e.pool = x509.NewCertPool()
	e.pool.AddCert(e.secure.Certificate())
	other := httptest.NewServer(http.HandlerFunc(appHandler))
	t.Cleanup(other.Close)

	tn := e.tailnet
	tn.AddName("app.internal.example", appAddr)
	tn.AddName("secure.internal.example", secureAddr)
	tn.AddName("other-env.internal.example", otherAddr)
	tn.AddName("stray.internal.example", strayAddr)
	tn.FailLookup("flaky.internal.example", errors.New("split DNS server 10.0.0.53 timed out"))
	tn.Route(netip.AddrPortFrom(appAddr, 80), e.app.Listener.Addr().String())
	tn.Route(netip.AddrPortFrom(secureAddr, 443), e.secure.Listener.Addr().String())
	tn.Route(netip.AddrPortFrom(otherAddr, 80), other.Listener.Addr().String())

	opts := egress.Options{
		Targets: []target.Target{
			{Host: "app.internal.example", Port: 80},
			{Host: "Secure.Internal.Example.", Port: 443},
			{Host: "ghost.internal.example", Port: 80}, // not in the tailnet's DNS
			{Host: "stray.internal.example", Port: 443},
			{Host: "flaky.internal.example", Port: 443},
			{Host: "192.0.2.10", Port: 443},
		},
		Resolver: tn,
		Dialer:   tn,
	}
	for _, m := range mutate {
		m(&opts)
	}
	e.proxy, e.addr = egresstest.StartProxy(t, opts)
	return e
}

func (e *env) proxyURL() *url.URL { return &url.URL{Scheme: "http", Host: e.addr.String()} }

// httpClient goes through the proxy with HTTP (CONNECT for https).
func (e *env) httpClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:           http.ProxyURL(e.proxyURL()),
			TLSClientConfig: &tls.Config{RootCAs: e.pool, ServerName: "example.com"},
		},
	}
}

// socksClient goes through the proxy with SOCKS5, sending names unresolved.
func (e *env) socksClient(t *testing.T) *http.Client {
	t.Helper()
	d, err := proxy.SOCKS5("tcp", e.addr.String(), nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:           nil,
			DialContext:     d.(proxy.ContextDialer).DialContext,
			TLSClientConfig: &tls.Config{RootCAs: e.pool, ServerName: "example.com"},
		},
	}
}

type appReply struct {
	Host    string
	URI     string
	Headers http.Header
	Body    string
	Msg     string
}

func getApp(t *testing.T, c *http.Client, rawURL string) appReply {
	t.Helper()
	resp, b := testhttp.Get(t, c, rawURL)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", rawURL, resp.Status, b)
	}
	var r appReply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("GET %s: decode: %v", rawURL, err)
	}
	return r
}

func lastEvent(t *testing.T, p *egress.Proxy) egress.Event {
	t.Helper()
	// Tunnels record when they end, which can be just after the client
	// sees its answer.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if evs := p.Events(); len(evs) > 0 {
			return evs[len(evs)-1]
		}
		if time.Now().After(deadline) {
			t.Fatal("no event recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitEvents waits until n events are recorded and returns them.
func waitEvents(t *testing.T, p *egress.Proxy, n int) []egress.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := p.Events()
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events recorded; want %d: %+v", len(evs), n, evs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProxyForwardsAbsoluteURIToTarget(t *testing.T) {
	e := newEnv(t)
	c := e.httpClient()
	req, _ := http.NewRequest("POST", "http://APP.internal.example./submit?q=1", strings.NewReader("form=1"))
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "drop me")
	req.Header.Set("X-Keep", "keep me")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got appReply
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 200 || got.Msg != "Hello from the private app" {
		t.Fatalf("status %d, reply %+v", resp.StatusCode, got)
	}
	if got.URI != "/submit?q=1" || got.Body != "form=1" {
		t.Errorf("target saw URI %q body %q; want origin-form /submit?q=1 and the body", got.URI, got.Body)
	}
	for _, h := range []string{"Proxy-Authorization", "X-Hop", "Proxy-Connection"} {
		if v := got.Headers.Get(h); v != "" {
			t.Errorf("target saw hop-by-hop/proxy header %s: %q", h, v)
		}
	}
	if got.Headers.Get("X-Keep") != "keep me" {
		t.Errorf("end-to-end header X-Keep lost: %v", got.Headers)
	}

	// Keep-alive: more requests reuse a pooled tailnet connection. (The
	// POST's connection may not be back in the pool yet, hence one more.)
	before := len(e.tailnet.Dials())
	for range 3 {
		getApp(t, c, "http://app.internal.example/")
	}
	if n := len(e.tailnet.Dials()) - before; n > 1 {
		t.Errorf("3 GETs dialled the tailnet %d times; want them to share one pooled connection", n)
	}
	ev := lastEvent(t, e.proxy)
	if ev.Protocol != egress.ProtocolHTTP || ev.Host != "app.internal.example" || ev.Port != 80 ||
		ev.Resolved != appAddr || ev.Refused || ev.Status != 200 || ev.BytesDown == 0 {
		t.Errorf("event = %+v", ev)
	}
}

func TestProxyConnectTunnelsTLSToTarget(t *testing.T) {
	e := newEnv(t)
	c := e.httpClient()
	got := getApp(t, c, "https://secure.internal.example/")
	c.CloseIdleConnections() // a tunnel's event is recorded when it ends
	if got.Msg != "Hello from the private app" {
		t.Fatalf("reply %+v", got)
	}
	ev := lastEvent(t, e.proxy)
	if ev.Protocol != egress.ProtocolConnect || ev.Host != "secure.internal.example" || ev.Port != 443 ||
		ev.Resolved != secureAddr || ev.Refused || ev.BytesUp == 0 || ev.BytesDown == 0 {
		t.Errorf("event = %+v", ev)
	}
	if l := e.tailnet.Lookups(); len(l) != 1 || l[0] != "secure.internal.example" {
		t.Errorf("tailnet lookups = %v; want the canonical target name once", l)
	}
}

func TestProxySOCKS5ResolvesNamesThroughTailnet(t *testing.T) {
	e := newEnv(t)
	c := e.socksClient(t)
	if got := getApp(t, c, "http://app.internal.example/"); got.Msg == "" {
		t.Fatalf("reply %+v", got)
	}
	if got := getApp(t, c, "https://secure.internal.example/"); got.Msg == "" {
		t.Fatalf("reply %+v", got)
	}
	if got := getApp(t, c, "https://192.0.2.10/"); got.Msg == "" {
		t.Fatalf("reply %+v", got)
	}
	c.CloseIdleConnections() // a tunnel's event is recorded when it ends
	lookups := e.tailnet.Lookups()
	if len(lookups) != 2 || lookups[0] != "app.internal.example" {
		t.Errorf("tailnet lookups = %v; want the two names (the IP literal needs none)", lookups)
	}
	evs := waitEvents(t, e.proxy, 3) // tunnels end in any order
	for _, ev := range evs {
		if ev.Protocol != egress.ProtocolSOCKS5 || ev.Refused || ev.BytesDown == 0 {
			t.Errorf("event = %+v", ev)
		}
		if ev.Host == "192.0.2.10" && ev.Resolved != secureAddr {
			t.Errorf("IP-literal event = %+v", ev)
		}
	}
}

// refusal is what each protocol's client saw for one request.
type refusal struct {
	status int
	code   string
	body   string
	socks  byte
}

// tryConnect sends a raw CONNECT and returns the proxy's answer.
func tryConnect(t *testing.T, e *env, hostport string) refusal {
	t.Helper()
	c, err := net.Dial("tcp", e.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", hostport, hostport)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("CONNECT %s: %v", hostport, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return refusal{status: resp.StatusCode, code: resp.Header.Get("X-Tailgate-Refusal"), body: string(b)}
}

// tryForward sends an absolute-URI GET through the proxy.
func tryForward(t *testing.T, e *env, rawURL string) refusal {
	t.Helper()
	resp, b := testhttp.Get(t, e.httpClient(), rawURL)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 && !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("refusal Content-Type %q; want text/plain", ct)
	}
	return refusal{status: resp.StatusCode, code: resp.Header.Get("X-Tailgate-Refusal"), body: string(b)}
}

// trySOCKS sends a SOCKS5 CONNECT for a domain name and returns the reply code.
func trySOCKS(t *testing.T, e *env, host string, port uint16) byte {
	t.Helper()
	c, err := net.Dial("tcp", e.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte{5, 1, 0, 5, 1, 0, 3, byte(len(host))}
	req = append(req, host...)
	req = append(req, byte(port>>8), byte(port))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(c, reply); err != nil {
		t.Fatalf("SOCKS5 %s:%d: read reply: %v", host, port, err)
	}
	if reply[0] != 5 || reply[1] != 0 || reply[2] != 5 {
		t.Fatalf("SOCKS5 %s:%d: bad reply %x", host, port, reply)
	}
	return reply[3]
}

func TestProxyRefusesWithReason(t *testing.T) {
	cases := []struct {
		name       string
		host       string
		port       uint16
		code       string
		status     int
		socks      byte
		bodyHas    string
		wantLookup bool
	}{
		{"public name", "example.com", 443, "not_a_target", 403, 0x02, "example.com:443 is not a target of this environment", false},
		{"another environment's host", "other-env.internal.example", 80, "not_a_target", 403, 0x02, "not a target", false},
		{"target host on a non-target port", "app.internal.example", 8080, "port_not_a_target", 403, 0x02, "only on port 80, not 8080", false},
		{"name not in the tailnet", "ghost.internal.example", 80, "name_not_in_tailnet", 502, 0x04, "does not resolve in the tailnet", true},
		{"resolver failure", "flaky.internal.example", 443, "resolve_failed", 502, 0x04, "timed out", true},
		{"address not routed by the tailnet", "stray.internal.example", 443, "not_via_tailnet", 403, 0x02, "host network is never used", true},
		{"IP literal of a name target", "100.64.0.5", 80, "not_a_target", 403, 0x02, "not a target", false},
		{"localhost", "localhost", 80, "not_a_target", 403, 0x02, "not a target", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			hp := net.JoinHostPort(tc.host, fmt.Sprint(tc.port))
			check := func(proto string, got refusal) {
				t.Helper()
				if got.status != tc.status || got.code != tc.code || !strings.Contains(got.body, tc.bodyHas) ||
					!strings.HasPrefix(got.body, "tailgate: ") {
					t.Errorf("%s %s: got %d %q %q; want %d %q containing %q", proto, hp, got.status, got.code, got.body, tc.status, tc.code, tc.bodyHas)
				}
				ev := lastEvent(t, e.proxy)
				if !ev.Refused || string(ev.Reason) != tc.code || ev.ReasonText == "" || ev.Port != tc.port {
					t.Errorf("%s %s: event %+v", proto, hp, ev)
				}
			}
			check("CONNECT", tryConnect(t, e, hp))
			check("forward", tryForward(t, e, "http://"+hp+"/"))
			if got := trySOCKS(t, e, tc.host, tc.port); got != tc.socks {
				t.Errorf("SOCKS5 %s: reply %#x; want %#x", hp, got, tc.socks)
			}
			if n := len(e.proxy.Events()); n != 3 {
				t.Errorf("%d events recorded; want one per request (3)", n)
			}
			if !tc.wantLookup && len(e.tailnet.Lookups()) != 0 {
				t.Errorf("refused before resolving, yet the tailnet saw lookups %v", e.tailnet.Lookups())
			}
			for _, d := range e.tailnet.Dials() {
				if d.Addr() != strayAddr {
					t.Errorf("refused request dialled %s", d)
				}
			}
		})
	}
}

func TestProxyMalformedRequestsGetClearErrorsAndOthersKeepWorking(t *testing.T) {
	e := newEnv(t, func(o *egress.Options) { o.MaxHeaderBytes = 4096 })
	raw := func(t *testing.T, payload string) string {
		t.Helper()
		c, err := net.Dial("tcp", e.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, payload)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no HTTP answer: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("HTTP/1.1 %s\n%s", resp.Status, b)
	}
	httpCases := []struct{ name, payload, want string }{
		{"CONNECT without port", "CONNECT app.internal.example HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"CONNECT with path", "CONNECT /app.internal.example:80 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"CONNECT with bad port", "CONNECT app.internal.example:99999 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"garbage request line", "HELLO\r\n\r\n", "HTTP/1.1 400"},
		{"origin-form request", "GET / HTTP/1.1\r\nHost: app.internal.example\r\n\r\n", "HTTP/1.1 400"},
		{"oversize headers", "GET http://app.internal.example/ HTTP/1.1\r\nHost: app.internal.example\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", "HTTP/1.1 431"},
		{"unsupported scheme", "GET ftp://app.internal.example/ HTTP/1.1\r\nHost: app.internal.example\r\n\r\n", "HTTP/1.1 400"},
	}
	for _, tc := range httpCases {
		t.Run(tc.name, func(t *testing.T) {
			got := raw(t, tc.payload)
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("answer %.200q; want %s", got, tc.want)
			}
			if strings.Contains(tc.want, "400") && !strings.Contains(got, "tailgate:") && !strings.Contains(got, "Bad Request") {
				t.Errorf("400 without an explanation: %.200q", got)
			}
		})
	}
	socksCases := []struct {
		name, payload string
		want          []byte
	}{
		{"no acceptable auth method", "\x05\x01\x02", []byte{5, 0xff}},
		{"zero methods", "\x05\x00", []byte{5, 0xff}},
		{"wrong version in request", "\x05\x01\x00\x04\x01\x00\x01", []byte{5, 0, 5, 0x01}},
		{"BIND command", "\x05\x01\x00\x05\x02\x00\x03\x14app.internal.example\x00\x50", []byte{5, 0, 5, 0x07}},
		{"UDP ASSOCIATE", "\x05\x01\x00\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00", []byte{5, 0, 5, 0x07}},
		{"unknown address type", "\x05\x01\x00\x05\x01\x00\x09\x01\x02\x03\x04", []byte{5, 0, 5, 0x08}},
		{"truncated request", "\x05\x01\x00\x05\x01\x00\x03\x40abc", []byte{5, 0}},
	}
	for _, tc := range socksCases {
		t.Run("SOCKS5 "+tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.payload)
			if tc.name == "truncated request" {
				// The client stops mid-request: the proxy must not hang
				// on it forever, and must not answer for it.
				c.(*net.TCPConn).CloseWrite()
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("proxy did not close the connection: %v (read %x)", err, got)
			}
			if len(got) < len(tc.want) || string(got[:len(tc.want)]) != string(tc.want) {
				t.Errorf("reply %x; want prefix %x", got, tc.want)
			}
		})
	}
	// After all that, well-behaved clients are still served.
	getApp(t, e.httpClient(), "http://app.internal.example/")
	getApp(t, e.socksClient(t), "https://secure.internal.example/")
}

func TestProxyServesConcurrentClients(t *testing.T) {
	e := newEnv(t)
	clients := []*http.Client{e.httpClient(), e.socksClient(t)}
	urls := []string{"http://app.internal.example/", "https://secure.internal.example/"}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, u := clients[i%2], urls[(i/2)%2]
			if i%5 == 0 {
				// Refused requests mixed in must not disturb the others.
				u = "http://example.com/"
			}
			resp, err := c.Get(u)
			if err != nil {
				if i%5 == 0 {
					return // SOCKS refusal surfaces as a dial error
				}
				errs <- fmt.Errorf("client %d %s: %w", i, u, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			want := 200
			if i%5 == 0 {
				want = 403
			}
			if resp.StatusCode != want {
				errs <- fmt.Errorf("client %d %s: status %d, want %d", i, u, resp.StatusCode, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// echoServer echoes whatever it reads and reports when a connection ends.
func echoServer(t *testing.T) (addr string, ended <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 16)
	addr = testtcp.Serve(t, func(c net.Conn) {
		io.Copy(c, c)
		c.Close()
		ch <- struct{}{}
	})
	return addr, ch
}

// openTunnel opens a CONNECT tunnel to the echo target and checks it echoes.
func openTunnel(t *testing.T, e *env, hostport string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	// The request and the first tunnel bytes in one write: the proxy must
	// pass on bytes it buffered behind the CONNECT request.
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nping", hostport, hostport)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("tunnel echo: %q %v", buf, err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}

func TestProxyCloseTearsDownTunnels(t *testing.T) {
	echo, ended := echoServer(t)
	e := newEnv(t, func(o *egress.Options) {
		o.Targets = append(o.Targets, target.Target{Host: "echo.internal.example", Port: 7})
	})
	e.tailnet.AddName("echo.internal.example", netip.MustParseAddr("100.64.0.7"))
	e.tailnet.Route(netip.MustParseAddrPort("100.64.0.7:7"), echo)

	c := openTunnel(t, e, "echo.internal.example:7")
	defer c.Close()
	e.proxy.Close()

	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client tunnel still open after Close: n=%d err=%v", n, err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("tailnet side of the tunnel still open after Close")
	}
	if _, err := net.Dial("tcp", e.addr.String()); err == nil {
		t.Error("proxy still accepts connections after Close")
	}
	ev := lastEvent(t, e.proxy)
	if ev.Protocol != egress.ProtocolConnect || ev.BytesUp != 4 || ev.BytesDown != 4 {
		t.Errorf("tunnel event = %+v; want 4 bytes each way", ev)
	}
}

func TestProxyIdleTunnelIsClosed(t *testing.T) {
	echo, ended := echoServer(t)
	e := newEnv(t, func(o *egress.Options) {
		o.Targets = append(o.Targets, target.Target{Host: "echo.internal.example", Port: 7})
		o.IdleTimeout = 200 * time.Millisecond
	})
	e.tailnet.AddName("echo.internal.example", netip.MustParseAddr("100.64.0.7"))
	e.tailnet.Route(netip.MustParseAddrPort("100.64.0.7:7"), echo)
	c := openTunnel(t, e, "echo.internal.example:7")
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle tunnel not closed: %v", err)
	}
	<-ended
}

func TestNewRejectsBadOptions(t *testing.T) {
	tn := egresstest.New()
	cases := map[string]egress.Options{
		"no resolver":    {Dialer: tn, Targets: []target.Target{{Host: "a", Port: 1}}},
		"no dialer":      {Resolver: tn, Targets: []target.Target{{Host: "a", Port: 1}}},
		"port zero":      {Resolver: tn, Dialer: tn, Targets: []target.Target{{Host: "a", Port: 0}}},
		"empty host":     {Resolver: tn, Dialer: tn, Targets: []target.Target{{Host: "", Port: 80}}},
		"host with junk": {Resolver: tn, Dialer: tn, Targets: []target.Target{{Host: "a b/c", Port: 80}}},
	}
	for name, o := range cases {
		if _, err := egress.New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
}

// fakeAddrListener pretends to listen on a non-loopback address.
type fakeAddrListener struct{ net.Listener }

func (fakeAddrListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 3128} }

func TestServeRefusesNonLoopbackListener(t *testing.T) {
	tn := egresstest.New()
	p, err := egress.New(egress.Options{Resolver: tn, Dialer: tn})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := p.Serve(fakeAddrListener{l}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("Serve on 192.0.2.1: %v; want a loopback-only error", err)
	}
}

func TestEventsStreamToOnEvent(t *testing.T) {
	var mu sync.Mutex
	var seen []egress.Event
	e := newEnv(t, func(o *egress.Options) {
		o.OnEvent = func(ev egress.Event) { mu.Lock(); seen = append(seen, ev); mu.Unlock() }
	})
	getApp(t, e.httpClient(), "http://app.internal.example/")
	waitEvents(t, e.proxy, 1) // recorded as the handler returns, just after the client has its answer
	tryForward(t, e, "http://example.com/")
	waitEvents(t, e.proxy, 2)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0].Refused || !seen[1].Refused {
		t.Fatalf("OnEvent saw %+v", seen)
	}
	b, err := json.Marshal(seen[1])
	if err != nil || !strings.Contains(string(b), `"reason":"not_a_target"`) || strings.Contains(string(b), `"resolved"`) {
		t.Errorf("event JSON %s %v", b, err)
	}
}

// stuckDialer never connects; it waits for the proxy to give up.
type stuckDialer struct {
	entered chan struct{}
	ended   chan error
}

func (d *stuckDialer) DialContext(ctx context.Context, _ string, _ netip.AddrPort) (net.Conn, error) {
	d.entered <- struct{}{}
	<-ctx.Done()
	d.ended <- ctx.Err()
	return nil, ctx.Err()
}

func TestProxyCloseEndsPendingDials(t *testing.T) {
	tn := egresstest.New()
	tn.AddName("slow.internal.example", appAddr)
	d := &stuckDialer{entered: make(chan struct{}, 1), ended: make(chan error, 1)}
	p, addr := egresstest.StartProxy(t, egress.Options{
		Targets:  []target.Target{{Host: "slow.internal.example", Port: 443}},
		Resolver: tn,
		Dialer:   d,
	})
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT slow.internal.example:443 HTTP/1.1\r\nHost: slow.internal.example:443\r\n\r\n")
	<-d.entered
	p.Close()
	if err := <-d.ended; err == nil {
		t.Fatal("dial context not cancelled by Close")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if len(b) > 0 && !strings.Contains(string(b), "proxy_closed") {
		t.Errorf("client got %q; want nothing or a proxy_closed refusal", b)
	}
	evs := p.Events()
	if len(evs) != 1 || evs[0].Reason != egress.ReasonProxyClosed {
		t.Errorf("events = %+v; want one proxy_closed refusal", evs)
	}
}
