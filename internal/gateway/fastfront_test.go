package gateway

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// headerEcho answers with what it received, headers in the order and
// spelling Go read them, and sets response headers a proxy must keep.
func headerEcho(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/slow" {
			// Slower than the /slow route's timeout.
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		if r.URL.Path == "/r/big" {
			// Longer than the fast front reads whole: streamed.
			w.Header().Set("Content-Length", "300000")
			w.Write([]byte(strings.Repeat("0123456789", 30000)))
			return
		}
		w.Header().Add("Set-Cookie", "a=1; Path=/a")
		w.Header().Add("Set-Cookie", "a=2; Path=/b")
		w.Header().Set("X-Backend", "echo")
		w.Header().Set("Content-Type", "application/json")
		// Hop-by-hop on the way back: a proxy drops them, and any
		// header the upstream names in Connection.
		w.Header().Set("Connection", "X-Private")
		w.Header().Set("X-Private", "upstream-only")
		w.Header().Set("Keep-Alive", "timeout=5")
		json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "uri": r.RequestURI, "host": r.Host, "headers": r.Header, "body": string(body),
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// fastFrontConfig has the policies the fast front runs, on routes it
// serves, a route whose backend nobody listens on and one that times out;
// with a key set (jwks, JSON), also a route under /auth that rate-limits,
// authenticates and authorizes on the token's subject.
func fastFrontConfig(port int, backend, jwks string) string {
	more := fmt.Sprintf(`
    - name: dead
      matches: [{path: {pathPrefix: /dead}}]
      backends: [{host: 127.0.0.1:%d}]
    - name: host
      matches: [{path: {exact: /host}}]
      policies:
        urlRewrite: {authority: {full: rewritten.example}}
      backends: [{host: %[2]s}]
    - name: slow
      matches: [{path: {exact: /slow}}]
      policies:
        timeout: {requestTimeout: 300ms}
      backends: [{host: %[2]s}]`, closedPort, backend)
	if jwks != "" {
		more += fmt.Sprintf(`
    - name: auth
      matches: [{path: {pathPrefix: /auth}}]
      policies:
        localRateLimit: [{maxTokens: 6, tokensPerFill: 1, fillInterval: 1h}]
        jwtAuth:
          mode: strict
          issuer: %s
          audiences: [gateway]
          jwks: '%s'
        authorization:
          rules: ['jwt.sub == "alice"']
      backends: [{host: %s}]`, frontIssuer, jwks, backend)
	}
	return fmt.Sprintf(`binds:
- port: %d
  listeners:
  - name: default
    protocol: HTTP
    routes:
    - name: api
      matches: [{path: {pathPrefix: /api}}]
      policies:
        cors:
          allowOrigins: ["https://app.example.com"]
          allowMethods: [GET]
          exposeHeaders: [x-backend]
        authorization:
          rules: ['request.headers["x-user"] == "alice"']
        responseHeaderModifier:
          add: {x-gw-out: "1"}
          remove: [x-backend-secret]
        requestHeaderModifier:
          set: {x-gw: "yes"}
      backends: [{host: %s}]
    - name: direct
      matches: [{path: {exact: /direct}}]
      policies:
        directResponse: {body: "made here", status: 203}
    - name: redirect
      matches: [{path: {exact: /old}}]
      policies:
        requestRedirect: {path: {full: /new}, status: 301}
    - name: rewrite
      matches: [{path: {pathPrefix: /v1}}]
      policies:
        urlRewrite: {path: {prefix: /v2}}
      backends: [{host: %s}]%s
    - name: rest
      backends: [{host: %s}]
`, port, backend, backend, more, backend)
}

const frontIssuer = "https://idp.front.example"

// closedPort is a loopback port nothing listens on (tcpmux; the other
// tests' dead backend too).
const closedPort = 1

// frontToken is a token of p's key k1 for sub, as fastFrontConfig's
// /auth route expects, expiring at exp.
func frontToken(p *idp, sub string, exp time.Time) string {
	return p.token("k1", claims{Claims: jwt.Claims{
		Issuer: frontIssuer, Subject: sub, Audience: jwt.Audience{"gateway"},
		Expiry: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(exp.Add(-2 * time.Hour)),
	}})
}

// exchangeAll writes raw on a new connection and reads every response
// until the gateway closes it or goes quiet; it returns their statuses.
func exchangeAll(t *testing.T, port int, raw string) []int {
	t.Helper()
	return plainHTTP.exchangeAll(t, port, raw)
}

// exchangeAll is exchangeAll on this transport.
func (ft frontTransport) exchangeAll(t *testing.T, port int, raw string) []int {
	t.Helper()
	c := ft.sendRaw(t, port, raw)
	defer c.Close()
	br := bufio.NewReader(c)
	var statuses []int
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return statuses
		}
		io.Copy(io.Discard, resp.Body)
		statuses = append(statuses, resp.StatusCode)
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	}
}

func fastServed(g *testGateway) float64 {
	return testutil.ToFloat64(g.metrics.fastFront.WithLabelValues(fmt.Sprintf("bind/%d", g.port)))
}

// sendRaw writes raw on a new connection to port.
func sendRaw(t *testing.T, port int, raw string) net.Conn {
	t.Helper()
	return plainHTTP.sendRaw(t, port, raw)
}

// frontTransport is how a test reaches a bind: plain TCP, or TLS to an
// HTTPS listener (certificate and key files), which the fast front
// serves the same way.
type frontTransport struct {
	name           string
	cert, key      string
	serverName     string
	expectedScheme string // what the backend sees in X-Forwarded-Proto
}

var plainHTTP = frontTransport{name: "http", expectedScheme: "http"}

// httpsFront is a TLS transport with a fresh self-signed certificate
// for gw.example.
func httpsFront(t *testing.T) frontTransport {
	cert, key := writeSelfSigned(t, t.TempDir(), "gw.example")
	return frontTransport{name: "https", cert: cert, key: key, serverName: "gw.example", expectedScheme: "https"}
}

// config is fastFrontConfig with the listener on this transport.
func (ft frontTransport) config(port int, backend, jwks string) string {
	return ft.listen(fastFrontConfig(port, backend, jwks))
}

// listen puts cfg's (first) listener on this transport.
func (ft frontTransport) listen(cfg string) string {
	if ft.cert == "" {
		return cfg
	}
	return strings.Replace(cfg, "    protocol: HTTP\n", fmt.Sprintf("    protocol: HTTPS\n    tls: {cert: %s, key: %s}\n", ft.cert, ft.key), 1)
}

// dial opens a connection to port on this transport.
func (ft frontTransport) dial(t *testing.T, port int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	if ft.cert != "" {
		pool := x509.NewCertPool()
		pem, _ := os.ReadFile(ft.cert)
		pool.AppendCertsFromPEM(pem)
		tc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: ft.serverName})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			t.Fatal(err)
		}
		c = tc
	}
	return c
}

// sendRaw is sendRaw on this transport.
func (ft frontTransport) sendRaw(t *testing.T, port int, raw string) net.Conn {
	t.Helper()
	c := ft.dial(t, port)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	return c
}

// exchangeRaw writes raw on a new connection and reads one response.
func exchangeRaw(t *testing.T, port int, raw string) (*http.Response, string) {
	t.Helper()
	return plainHTTP.exchangeRaw(t, port, raw)
}

// exchangeRaw is exchangeRaw on this transport.
func (ft frontTransport) exchangeRaw(t *testing.T, port int, raw string) (*http.Response, string) {
	t.Helper()
	c := ft.sendRaw(t, port, raw)
	defer c.Close()
	var req *http.Request
	if strings.HasPrefix(raw, "HEAD ") {
		req = &http.Request{Method: http.MethodHead}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return nil, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestFastFrontAnswersAsNetHTTPDoes sends the same raw requests to a
// gateway with the fast front and one without, behind the same backend:
// the backend must see the same request and the client get the same
// response (status, headers but Date, body). Over TLS too: an HTTPS
// listener's requests are the fast front's as well.
func TestFastFrontAnswersAsNetHTTPDoes(t *testing.T) {
	for _, ft := range []frontTransport{plainHTTP, httpsFront(t)} {
		t.Run(ft.name, func(t *testing.T) { answersAsNetHTTPDoes(t, ft) })
	}
}

func answersAsNetHTTPDoes(t *testing.T, ft frontTransport) {
	be := headerEcho(t)
	p := newIDP(t, "k1")
	jwks := string(p.jwks())
	fastPort, slowPort := freePort(t), freePort(t)
	fast := startGateway(t, ft.config(fastPort, hostOf(be), jwks), fastPort)
	slow := startGateway(t, ft.config(slowPort, hostOf(be), jwks), slowPort, func(o *Options) { o.NoFastFront = true })
	bearer := func(sub string, exp time.Duration) string {
		return "Authorization: Bearer " + frontToken(p, sub, time.Now().Add(exp)) + "\r\n"
	}

	requests := []string{
		"GET /api/x?b=c&d=%20e HTTP/1.1\r\nHost: gw.example\r\nX-User: alice\r\nAccept: */*\r\n\r\n",
		"GET /api/x HTTP/1.1\r\nHost: gw.example\r\nX-User: bob\r\n\r\n",
		"GET /api/x HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"OPTIONS /api/x HTTP/1.1\r\nHost: gw.example\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: GET\r\n\r\n",
		"GET /api/x HTTP/1.1\r\nHost: gw.example\r\nX-User: alice\r\nOrigin: https://app.example.com\r\n\r\n",
		// Duplicates, lower-case names, spacing, a header the client
		// names in Connection, spoofed forwarding headers, Pragma.
		"GET /r HTTP/1.1\r\nhost: gw.example\r\nx-dup: 1\r\nX-Dup:2 \r\nX-Dup:\t3\r\nx-lower: v\r\n" +
			"Connection: keep-alive, X-Strip\r\nX-Strip: s\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n" +
			"Forwarded: for=6.6.6.6\r\nPragma: no-cache\r\nCookie: a=1\r\nCookie: b=2\r\nTE: trailers\r\nKeep-Alive: 5\r\n\r\n",
		// The same in other spellings: the gateway owns these headers
		// whatever their case.
		"GET /r HTTP/1.1\r\nhost: gw.example\r\nx-forwarded-for: 6.6.6.6\r\nx-real-ip: 6.6.6.6\r\n" +
			"forwarded: for=6.6.6.6\r\nx-forwarded-host: evil.example\r\nX-FORWARDED-PROTO: gopher\r\n" +
			"connection: keep-alive, x-strip\r\nx-strip: s\r\nkeep-alive: 5\r\nproxy-connection: keep-alive\r\n" +
			"tE: trailers\r\nPRAGMA: no-cache\r\nuser-agent: ua\r\ncookie: a=1\r\ncookie: b=2\r\n\r\n",
		"GET /r HTTP/1.1\r\nHost: gw.example\r\nte: gzip\r\ntrailer: x\r\nProxy-Authorization: Basic eA==\r\nCache-Control: max-age=0\r\nPragma: no-cache\r\n\r\n",
		// None of those: fasthttp's request goes upstream as read.
		"GET /r HTTP/1.1\r\nhost: gw.example\r\nx-dup: 1\r\nX-Dup:2 \r\nX-Dup:\t3\t\r\nuser-agent: ua\r\n" +
			"Cookie: a=1\r\ncookie: b=2\r\nAccept:  */*  \r\ncontent-type: text/x\r\nCache-Control: no-cache\r\n\r\n",
		"GET /r?q=%20a&b HTTP/1.1\r\nHost: gw.example:80\r\n\r\n",
		"HEAD /r HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"OPTIONS /r HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"GET /direct HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"GET /old HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"GET /v1/a/b?q=1 HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"GET /r/a%2Fb HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"GET /r/./a/../b//c HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"GET /r HTTP/1.1\r\nHost: [::1]:99\r\nUser-Agent: ua\r\n\r\n",
		"GET /r HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n",
		"GET /r/big HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"HEAD /r/big HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"GET /host HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"GET /dead HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"GET /slow HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		// jwtAuth, authorization and localRateLimit (6 tokens: the
		// seventh request to /auth is refused).
		"GET /auth/a HTTP/1.1\r\nHost: gw.example\r\n" + bearer("alice", time.Hour) + "\r\n",
		"HEAD /auth/a HTTP/1.1\r\nHost: gw.example\r\n" + bearer("alice", time.Hour) + "\r\n",
		"GET /auth/a HTTP/1.1\r\nHost: gw.example\r\n" + bearer("bob", time.Hour) + "\r\n",
		"GET /auth/a HTTP/1.1\r\nHost: gw.example\r\n" + bearer("alice", -time.Hour) + "\r\n",
		"GET /auth/a HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer not.a.token\r\n\r\n",
		"GET /auth/a HTTP/1.1\r\nHost: gw.example\r\n\r\n",
		"GET /auth/a HTTP/1.1\r\nHost: gw.example\r\n" + bearer("alice", time.Hour) + "\r\n",
	}
	var statuses []int
	for i, raw := range requests {
		before := fastServed(fast)
		fr, fb := ft.exchangeRaw(t, fastPort, raw)
		sr, sb := ft.exchangeRaw(t, slowPort, raw)
		name := strings.SplitN(raw, "\r\n", 2)[0]
		if fr == nil || sr == nil {
			t.Errorf("%s: fast front answered %v, net/http %v", name, fr != nil, sr != nil)
			statuses = append(statuses, 0)
			continue
		}
		statuses = append(statuses, fr.StatusCode)
		if fastServed(fast) != before+1 {
			t.Errorf("%s: the fast front did not serve it", name)
		}
		if fr.StatusCode != sr.StatusCode || fb != sb {
			t.Errorf("%s:\n fast front %d %q\n net/http   %d %q", name, fr.StatusCode, fb, sr.StatusCode, sb)
		}
		if want := `"X-Forwarded-Proto":["` + ft.expectedScheme + `"]`; i == 0 && !strings.Contains(fb, want) {
			t.Errorf("%s: the backend saw %s; want %s", name, fb, want)
		}
		for _, h := range []http.Header{fr.Header, sr.Header} {
			h.Del("Date")
		}
		if !headersEqual(fr.Header, sr.Header) {
			t.Errorf("%s: response headers differ:\n fast front %v\n net/http   %v", name, fr.Header, sr.Header)
		}
		if fr.ContentLength != sr.ContentLength {
			t.Errorf("%s: Content-Length %d on the fast front, %d on net/http", name, fr.ContentLength, sr.ContentLength)
		}
	}
	// The policies did refuse: the dead backend, the timeout, then
	// /auth's requests.
	if got, want := statuses[len(statuses)-9:], []int{502, 504, 200, 200, 403, 401, 401, 401, 429}; !slices.Equal(got, want) {
		t.Errorf("statuses of /dead, /slow and /auth: %v; want %v", got, want)
	}
	if fastServed(slow) != 0 {
		t.Errorf("NoFastFront gateway served %v requests on the fast front", fastServed(slow))
	}
	// Each request is in the access log once, the same way: the same
	// fields and values but for the time, the duration, the client's
	// port and the bind's.
	if f, s := requestLines(fast, len(requests)), requestLines(slow, len(requests)); f != len(requests) || s != f {
		t.Errorf("access log lines: fast front %d, net/http %d; want %d each", f, s, len(requests))
	}
	// And counted the same way.
	if f, s := requestSeries(t, fast), requestSeries(t, slow); !maps.Equal(f, s) {
		t.Errorf("metrics differ:\n fast front %v\n net/http   %v", f, s)
	}
	fl, sl := accessLines(fast), accessLines(slow)
	for i := range max(len(fl), len(sl)) {
		var f, s string
		if i < len(fl) {
			f = fl[i]
		}
		if i < len(sl) {
			s = sl[i]
		}
		if f != s {
			t.Errorf("access lines differ:\n fast front %s\n net/http   %s", f, s)
		}
	}
	// A client that asks to close is closed on, after its answer.
	closing := "GET /r HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n"
	for _, port := range []int{fastPort, slowPort} {
		if got := ft.exchangeAll(t, port, closing+"GET /r HTTP/1.1\r\nHost: gw.example\r\n\r\n"); !slices.Equal(got, []int{200}) {
			t.Errorf("Connection: close, then another request, on :%d: answered %v; want only the first, 200", port, got)
		}
	}
}

// requestSeries are g's request, duration and denial series (a
// histogram by its count), by name and labels but the bind's.
func requestSeries(t *testing.T, g *testGateway) map[string]float64 {
	t.Helper()
	families, err := g.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]float64{}
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, "tailgate_gateway_request") && name != "tailgate_gateway_denials_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				if l.GetName() != "bind" {
					key += " " + l.GetName() + "=" + l.GetValue()
				}
			}
			if h := m.GetHistogram(); h != nil {
				series[key] = float64(h.GetSampleCount())
			} else {
				series[key] = m.GetCounter().GetValue()
			}
		}
	}
	return series
}

// varyingFields are the access-log fields that differ between two
// gateways serving the same requests.
var varyingFields = regexp.MustCompile(`\b(time|duration_ms|src|bind)=("[^"]*"|\S*)`)

// accessLines are g's access-log request lines with varyingFields
// blanked, sorted (a streamed answer is logged when sent, so lines may
// come in another order).
func accessLines(g *testGateway) []string {
	var lines []string
	for _, l := range strings.Split(g.access.String(), "\n") {
		if strings.Contains(l, "msg=request") {
			lines = append(lines, varyingFields.ReplaceAllString(l, "$1=_"))
		}
	}
	slices.Sort(lines)
	return lines
}

// requestLines is the number of access-log request lines once want are
// there or 5 s have passed: the fast front logs a streamed response when
// its last byte is sent, after the client may have read it.
func requestLines(g *testGateway, want int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := strings.Count(g.access.String(), "msg=request")
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestFastFrontHandsTheConnectionToNetHTTPAtABody pipelines plain and
// body-carrying requests on one connection: every request is answered,
// in order, and the requests from the first body on are net/http's. Over
// TLS, net/http's requests on the handed-off connection are still known
// to have come over TLS (the backend is told https).
func TestFastFrontHandsTheConnectionToNetHTTPAtABody(t *testing.T) {
	for _, ft := range []frontTransport{plainHTTP, httpsFront(t)} {
		t.Run(ft.name, func(t *testing.T) { handsTheConnectionToNetHTTPAtABody(t, ft) })
	}
}

func handsTheConnectionToNetHTTPAtABody(t *testing.T, ft frontTransport) {
	be := headerEcho(t)
	port := freePort(t)
	g := startGateway(t, ft.config(port, hostOf(be), ""), port)
	c := ft.dial(t, port)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	get := "GET /r/%d HTTP/1.1\r\nHost: gw\r\n\r\n"
	post := "POST /r/post HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello"
	fmt.Fprintf(c, get+get+post+get, 1, 2, 3)
	br := bufio.NewReader(c)
	want := []string{`"uri":"/r/1"`, `"uri":"/r/2"`, `"body":"hello"`, `"uri":"/r/3"`}
	for i, w := range want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), w) {
			t.Fatalf("response %d: %d %s; want 200 with %s", i+1, resp.StatusCode, b, w)
		}
		if proto := `"X-Forwarded-Proto":["` + ft.expectedScheme + `"]`; !strings.Contains(string(b), proto) {
			t.Errorf("response %d: the backend saw %s; want %s", i+1, b, proto)
		}
	}
	if n := fastServed(g); n != 2 {
		t.Errorf("fast front served %v requests; want the 2 before the POST", n)
	}
	if n := requestLines(g, 4); n != 4 {
		t.Errorf("access log has %d request lines; want 4", n)
	}
}

// TestFastFrontLeavesHostileInputToNetHTTP: requests whose framing two
// parsers could read differently are handed to net/http, which answers
// them, and forwards what it forwards, exactly as on a gateway without
// the fast front.
func TestFastFrontLeavesHostileInputToNetHTTP(t *testing.T) {
	for _, ft := range []frontTransport{plainHTTP, httpsFront(t)} {
		t.Run(ft.name, func(t *testing.T) {
			t.Parallel() // each waits out quiet connections; they share nothing
			leavesHostileInputToNetHTTP(t, ft)
		})
	}
}

func leavesHostileInputToNetHTTP(t *testing.T, ft frontTransport) {
	recorder := func() (*httptest.Server, chan string) {
		seen := make(chan string, 64)
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			seen <- fmt.Sprintf("%s %s %q", r.Method, r.RequestURI, b)
		}))
		t.Cleanup(be.Close)
		return be, seen
	}
	fastBE, fastSeen := recorder()
	slowBE, slowSeen := recorder()
	fastPort, slowPort := freePort(t), freePort(t)
	fast := startGateway(t, ft.listen(simpleConfig(fastPort, hostOf(fastBE), "", "")), fastPort)
	startGateway(t, ft.listen(simpleConfig(slowPort, hostOf(slowBE), "", "")), slowPort, func(o *Options) { o.NoFastFront = true })
	behind := "GET /behind HTTP/1.1\r\nHost: gw\r\n\r\n"
	hostile := map[string]string{
		"CL and TE":          "GET / HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + behind,
		"obs-fold TE":        "GET / HTTP/1.1\r\nHost: gw\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + behind,
		"two Hosts":          "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"bad Host":           "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
		"space before colon": "GET / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + behind,
		"bare LF":            "GET / HTTP/1.1\nHost: gw\nContent-Length: 3\n\nabc",
		"NUL in a value":     "GET / HTTP/1.1\r\nHost: gw\r\nX: a\x00b\r\n\r\n",
		"HTTP/1.0":           "GET / HTTP/1.0\r\nHost: gw\r\n\r\n",
		"absolute form":      "GET http://gw/ HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET with a body":    "GET / HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc" + behind,
		"overlong head":      "GET / HTTP/1.1\r\nHost: gw\r\nX: " + strings.Repeat("a", 8000) + "\r\n\r\n",
		"broken escape":      "GET /r/%zz HTTP/1.1\r\nHost: gw\r\n\r\n" + behind,
	}
	drain := func(seen chan string) []string {
		var got []string
		for {
			select {
			case s := <-seen:
				got = append(got, s)
			case <-time.After(200 * time.Millisecond):
				return got
			}
		}
	}
	for name, raw := range hostile {
		before := fastServed(fast)
		f, s := ft.exchangeAll(t, fastPort, raw), ft.exchangeAll(t, slowPort, raw)
		if fastServed(fast) != before {
			t.Errorf("%s: the fast front served it", name)
		}
		if !slices.Equal(f, s) {
			t.Errorf("%s: answered %v with the fast front, %v without", name, f, s)
		}
		if f, s := drain(fastSeen), drain(slowSeen); !slices.Equal(f, s) {
			t.Errorf("%s: the backend saw %q with the fast front, %q without", name, f, s)
		}
	}
}

// TestFastFrontStreamsAnEventStream: a backend's events reach the
// caller as they are written, not when the response ends.
func TestFastFrontStreamsAnEventStream(t *testing.T) {
	release := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: second\n\n")
	}))
	t.Cleanup(be.Close)
	defer close(release)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), "", ""), port)
	resp, err := http.Get(g.url("/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event: %q, %v", line, err)
	}
	if fastServed(g) != 1 {
		t.Errorf("the fast front did not serve the stream")
	}
}

// TestFastFrontStepsAsideWhenAReloadNeedsNetHTTP: a reload that puts a
// policy the fast front does not run on the bind moves even open
// keep-alive connections to net/http, and back.
func TestFastFrontStepsAsideWhenAReloadNeedsNetHTTP(t *testing.T) {
	be := headerEcho(t)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), "", ""), port)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	roundTrip := func(step string) {
		t.Helper()
		fmt.Fprint(c, "GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", step, resp.StatusCode)
		}
	}
	roundTrip("before the reload")
	if fastServed(g) != 1 {
		t.Fatalf("fast front served %v; want 1", fastServed(g))
	}
	retry := simpleConfig(port, hostOf(be), "retry: {attempts: 2, codes: [503]}", "")
	if err := os.WriteFile(g.path, []byte(retry), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	roundTrip("after a reload to a retry policy")
	if fastServed(g) != 1 {
		t.Errorf("the fast front served a request on a bind with retries")
	}
	if err := os.WriteFile(g.path, []byte(simpleConfig(port, hostOf(be), "", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, g.url("/y")); code != 200 || fastServed(g) != 2 {
		t.Errorf("after reloading back: %d, fast front served %v; want 200 and 2", code, fastServed(g))
	}
}
