package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

// tlsOrigin is a local HTTPS server standing in for a public host: its
// certificate is self-signed for name, so only a client that trusts that
// certificate (not the gateway's) completes the handshake.
type tlsOrigin struct {
	name     string
	srv      *httptest.Server
	certFile string
	conns    atomic.Int32
}

func startOrigin(t *testing.T, name string) *tlsOrigin {
	t.Helper()
	o := &tlsOrigin{name: name}
	certFile, keyFile := writeSelfSigned(t, t.TempDir(), name)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	o.certFile = certFile
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", name)
	}))
	o.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	o.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			o.conns.Add(1)
		}
	}
	o.srv.StartTLS()
	t.Cleanup(o.srv.Close)
	return o
}

func (o *tlsOrigin) pool(t *testing.T) *x509.CertPool {
	pool := x509.NewCertPool()
	b, err := os.ReadFile(o.certFile)
	if err != nil || !pool.AppendCertsFromPEM(b) {
		t.Fatal("cannot read origin certificate")
	}
	return pool
}

// startEgressExample runs agentgateway's traffic-egress-proxy example with
// the CONNECT bind moved to a free port and "<name>:443" dialled to the
// local origins instead of the internet.
func startEgressExample(t *testing.T, origins ...*tlsOrigin) *testGateway {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/agentgateway/examples/traffic-egress-proxy/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := strings.Replace(string(b), "- port: 3000", fmt.Sprintf("- port: %d", port), 1)
	if cfg == string(b) {
		t.Fatal("the example no longer has its CONNECT bind on port 3000")
	}
	addrs := map[string]string{}
	for _, o := range origins {
		addrs[o.name+":443"] = o.srv.Listener.Addr().String()
	}
	return startGateway(t, cfg, port, func(o *Options) {
		o.egressDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			local, ok := addrs[addr]
			if !ok {
				return nil, fmt.Errorf("test resolver: %s is not a local origin", addr)
			}
			return (&net.Dialer{}).DialContext(ctx, network, local)
		}
	})
}

// connect opens a CONNECT tunnel by hand and returns the proxy's status
// and, when 200, the tunnel.
func connect(t *testing.T, port int, target string) (int, net.Conn) {
	t.Helper()
	c := sendRaw(t, port, fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target))
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, c
}

func TestEgressProxyExampleTunnelsAllowedHostsWithoutTerminatingTLS(t *testing.T) {
	pypi, evil := startOrigin(t, "pypi.org"), startOrigin(t, "evil.example")
	tg := startEgressExample(t, pypi, evil)

	// What pip does with HTTPS_PROXY set: CONNECT, then TLS to pypi.org
	// verifying pypi.org's own certificate.
	proxy, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", tg.port))
	var peer *x509.Certificate
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(proxy),
		TLSClientConfig: &tls.Config{RootCAs: pypi.pool(t), VerifyConnection: func(cs tls.ConnectionState) error {
			peer = cs.PeerCertificates[0]
			return nil
		}},
	}}
	_, body := testhttp.Get(t, hc, "https://pypi.org/simple/")
	if string(body) != "hello from pypi.org" {
		t.Fatalf("body %q", body)
	}
	if peer == nil || peer.Subject.CommonName != "pypi.org" {
		t.Fatalf("client saw certificate %v; want the origin's own (TLS not terminated)", peer)
	}
	// A tunnel is logged when it closes.
	hc.CloseIdleConnections()
	line := tg.access.WaitFor(t, "CONNECT")
	for _, want := range []string{"listener=secure/public-egress", "route=public-egress-allowlist", "backend=dynamic/pypi.org:443", "status=200"} {
		if !strings.Contains(line, want) {
			t.Errorf("access log %q lacks %q", line, want)
		}
	}

	// A host no tcpRoute lists is refused before any tunnel opens.
	if code, _ := connect(t, tg.port, "evil.example:443"); code != http.StatusForbidden {
		t.Errorf("CONNECT evil.example:443 = %d, want 403", code)
	}
	tg.access.WaitFor(t, "host evil.example is not allowed by any tcpRoute")
	// A port no gateway listens on is refused.
	if code, _ := connect(t, tg.port, "pypi.org:8443"); code != http.StatusNotFound {
		t.Errorf("CONNECT pypi.org:8443 = %d, want 404", code)
	}
	tg.access.WaitFor(t, "no gateway on port 8443")
	// An IP address is not a name a route can allow.
	if code, _ := connect(t, tg.port, "127.0.0.1:443"); code != http.StatusForbidden {
		t.Errorf("CONNECT to an IP = %d, want 403", code)
	}

	// An allowed CONNECT host with another name in the SNI: the tunnel
	// closes without dialling anything.
	code, c := connect(t, tg.port, "pypi.org:443")
	if code != http.StatusOK {
		t.Fatalf("CONNECT pypi.org:443 = %d", code)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "evil.example", RootCAs: evil.pool(t)})
	if err := tc.Handshake(); err == nil {
		t.Error("TLS to evil.example inside a pypi.org tunnel completed")
	}
	tg.access.WaitFor(t, `SNI \"evil.example\" does not match the CONNECT host pypi.org`)

	// No SNI at all: closed too.
	_, c = connect(t, tg.port, "pypi.org:443")
	tc = tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err == nil {
		t.Error("TLS without SNI completed")
	}
	tg.access.WaitFor(t, "the ClientHello has no SNI")
	if n := evil.conns.Load(); n != 0 {
		t.Errorf("evil.example got %d connections", n)
	}

	// Plain HTTP to the CONNECT port gets a clear status.
	code, body2, hdr := get(t, tg.url("/simple/"))
	if code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "CONNECT" || !strings.Contains(body2, "CONNECT proxy") {
		t.Errorf("GET on a tunnel bind = %d %q Allow=%q", code, body2, hdr.Get("Allow"))
	}

	// An open tunnel ends when the gateway stops (a hijacked connection
	// is invisible to http.Server.Shutdown).
	_, c = connect(t, tg.port, "pypi.org:443")
	tc = tls.Client(c, &tls.Config{ServerName: "pypi.org", RootCAs: pypi.pool(t)})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tg.Close()
	var ne net.Error
	if _, err := tc.Read(make([]byte, 1)); err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Errorf("read on a tunnel after Close: %v; want it closed", err)
	}
}

// Without a test dialer the gateway's own egress policy applies: a listed
// name that resolves to loopback (where the admin port lives) is refused
// at dial time.
func TestEgressDialRefusesLoopback(t *testing.T) {
	local := startOrigin(t, "localhost")
	_, originPort, _ := net.SplitHostPort(local.srv.Listener.Addr().String())
	port := freePort(t)
	tg := startGateway(t, fmt.Sprintf(`binds:
- port: %d
  tunnelProtocol: connect
  listeners: []
gateways:
  egress:
    port: %s
    listeners:
    - name: tls
      protocol: TLS
tcpRoutes:
- gateways: egress
  hostnames: [localhost]
  backends:
  - dynamic: {}
`, port, originPort), port)
	code, c := connect(t, tg.port, "localhost:"+originPort)
	if code != http.StatusOK {
		t.Fatalf("CONNECT = %d", code)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "localhost", RootCAs: local.pool(t)})
	if err := tc.Handshake(); err == nil {
		t.Fatal("a tunnel reached a loopback origin")
	}
	line := tg.access.WaitFor(t, "dial failed")
	if !strings.Contains(line, "loopback") {
		t.Errorf("access log does not say why: %s", line)
	}
	if n := local.conns.Load(); n != 0 {
		t.Errorf("loopback origin got %d connections", n)
	}
}

// Route choice follows agentgateway: exact, then the most specific
// wildcard, then a route without hostnames; "*.x" does not match "x".
func TestEgressRouteMatching(t *testing.T) {
	f, err := config.Parse("routes.yaml", []byte(`binds:
- port: 3000
  tunnelProtocol: connect
  listeners: []
gateways:
  gw:
    port: 443
    listeners:
    - name: corp
      hostname: "*.corp.example"
      protocol: TLS
    - name: any
      protocol: TLS
tcpRoutes:
- name: exact
  gateways: gw/any
  hostnames: [github.com]
  backends: [{dynamic: {}}]
- name: wide
  gateways: gw/any
  hostnames: ["*.githubusercontent.com"]
  backends: [{dynamic: {}}]
- name: narrow
  gateways: gw/any
  hostnames: ["*.raw.githubusercontent.com"]
  backends: [{dynamic: {}}]
- name: corp-all
  gateways: gw/corp
  backends: [{dynamic: {}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	eg := compileEgress(f)[443]
	for host, want := range map[string]string{
		"github.com":                  "any exact",
		"api.github.com":              "any -",
		"x.githubusercontent.com":     "any wide",
		"a.b.githubusercontent.com":   "any wide",
		"x.raw.githubusercontent.com": "any narrow",
		"githubusercontent.com":       "any -",
		"evilgithubusercontent.com":   "any -",
		"git.corp.example":            "corp corp-all",
		"corp.example":                "any -",
	} {
		el, r := eg.match(host)
		got := strings.TrimPrefix(el.name, "gw/") + " -"
		if r != nil {
			got = strings.TrimPrefix(el.name, "gw/") + " " + r.name
		}
		if got != want {
			t.Errorf("%s: got %s, want %s", host, got, want)
		}
	}
}
