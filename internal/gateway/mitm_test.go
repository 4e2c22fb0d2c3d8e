package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

// upstream is a local HTTPS server standing in for a public host: it
// echoes the request header the example injects. Its certificate is
// self-signed for name.
type upstream struct {
	name string
	srv  *httptest.Server
	cert string
}

func startUpstream(t *testing.T, name string) *upstream {
	t.Helper()
	certFile, keyFile := writeSelfSigned(t, t.TempDir(), name)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Agentgateway-Resp-Message", "from upstream") // the gateway's set replaces it
		fmt.Fprintf(w, "%s saw host=%s req-message=%q", name, r.Host, r.Header.Get("X-Agentgateway-Req-Message"))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &upstream{name: name, srv: srv, cert: certFile}
}

type mitmExample struct {
	*testGateway
	internalPort int
	client       *http.Client
	caPool       *x509.CertPool
}

// startDynamicTLSExample runs agentgateway's config-dynamic-tls.yaml with
// the CONNECT bind and the internal bind moved to free ports. trusted
// upstreams are the ones the gateway's re-encryption trusts (the test
// stands in for the system's roots with Options.egressRoots); every
// upstream is reached by name through Options.egressDial, which stands
// in for DNS. With no upstreams at all, the real egress dialer is used.
func startDynamicTLSExample(t *testing.T, trusted, untrusted []*upstream) *mitmExample {
	t.Helper()
	dir, _ := filepath.Abs("testdata/agentgateway")
	b, err := os.ReadFile(filepath.Join(dir, "examples/traffic-egress-proxy/config-dynamic-tls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	port, internal := freePort(t), freePort(t)
	cfg := string(b)
	for _, r := range [][2]string{
		{"- port: 3000", fmt.Sprintf("- port: %d", port)},
		{"- port: 443", fmt.Sprintf("- port: %d", internal)},
		{"cert: examples/", "cert: " + dir + "/examples/"},
		{"key: examples/", "key: " + dir + "/examples/"},
	} {
		next := strings.Replace(cfg, r[0], r[1], 1)
		if next == cfg {
			t.Fatalf("the example no longer has %q", r[0])
		}
		cfg = next
	}
	addrs := map[string]string{}
	roots := x509.NewCertPool()
	for _, u := range append(append([]*upstream{}, trusted...), untrusted...) {
		addrs[net.JoinHostPort(u.name, fmt.Sprint(internal))] = u.srv.Listener.Addr().String()
	}
	for _, u := range trusted {
		pem, _ := os.ReadFile(u.cert)
		roots.AppendCertsFromPEM(pem)
	}
	tg := startGateway(t, cfg, port, func(o *Options) {
		if len(addrs) == 0 {
			return
		}
		o.egressRoots = roots
		o.egressDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			local, ok := addrs[addr]
			if !ok {
				return nil, fmt.Errorf("test resolver: %s is not a local upstream", addr)
			}
			return (&net.Dialer{}).DialContext(ctx, network, local)
		}
	})
	caPool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(dir, "examples/mcp-tls/certs/ca-cert.pem"))
	if !caPool.AppendCertsFromPEM(caPEM) {
		t.Fatal("cannot read the example's CA")
	}
	proxy, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy:             http.ProxyURL(proxy),
		TLSClientConfig:   &tls.Config{RootCAs: caPool},
		DisableKeepAlives: true, // one tunnel, so one handshake, per request
	}}
	return &mitmExample{testGateway: tg, internalPort: internal, client: client, caPool: caPool}
}

func (m *mitmExample) get(t *testing.T, name string) (*http.Response, string) {
	t.Helper()
	resp, body := testhttp.Get(t, m.client, fmt.Sprintf("https://%s:%d/hello", name, m.internalPort))
	return resp, string(body)
}

func TestDynamicTLSExampleInterceptsAndReEncrypts(t *testing.T) {
	api := startUpstream(t, "api.example.com")
	m := startDynamicTLSExample(t, []*upstream{api}, nil)

	resp, body := m.get(t, "api.example.com")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	// The upstream got the request, over TLS the gateway verified, with
	// the request header set; the client got the response header set.
	if want := `api.example.com saw host=api.example.com:` + fmt.Sprint(m.internalPort) + ` req-message="Hello from AgentGateway!"`; body != want {
		t.Errorf("body %q\nwant %q", body, want)
	}
	if got := resp.Header.Values("X-Agentgateway-Resp-Message"); len(got) != 1 || got[0] != "Hello from AgentGateway!" {
		t.Errorf("x-agentgateway-resp-message = %q; want the gateway's value only", got)
	}
	// The client saw a leaf for the name, signed by the example's CA
	// (the client verified the chain against that CA alone).
	leaf := resp.TLS.PeerCertificates[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "api.example.com" || leaf.IsCA {
		t.Errorf("leaf SANs %v, CA %t; want a leaf for api.example.com only", leaf.DNSNames, leaf.IsCA)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.caPool, DNSName: "api.example.com"}); err != nil {
		t.Errorf("leaf does not verify against the example CA: %v", err)
	}
	if leaf.NotAfter.After(time.Now().Add(25 * time.Hour)) {
		t.Errorf("leaf valid until %s; want about a day", leaf.NotAfter)
	}
	// A second tunnel gets the cached leaf, not a new key.
	resp2, _ := m.get(t, "api.example.com")
	if resp2.TLS.PeerCertificates[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Error("a second handshake for the same name minted a new leaf")
	}
	line := m.access.WaitFor(t, "backend=dynamic/")
	for _, want := range []string{fmt.Sprintf("bind=bind/%d", m.internalPort), fmt.Sprintf("backend=dynamic/api.example.com:%d", m.internalPort), "status=200"} {
		if !strings.Contains(line, want) {
			t.Errorf("access log %q lacks %q", line, want)
		}
	}
}

func TestDynamicTLSExampleRefusesAnUntrustedUpstream(t *testing.T) {
	evil := startUpstream(t, "evil.example.com")
	m := startDynamicTLSExample(t, nil, []*upstream{evil})
	resp, body := m.get(t, "evil.example.com")
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, "saw") {
		t.Fatalf("status %d body %q; want 502 and nothing from the upstream", resp.StatusCode, body)
	}
	if line := m.access.WaitFor(t, "status=502"); !strings.Contains(line, "certificate") {
		t.Errorf("access log %q does not say the certificate was refused", line)
	}
}

func TestDynamicTLSInternalBindIsNotOpened(t *testing.T) {
	api := startUpstream(t, "api.example.com")
	m := startDynamicTLSExample(t, []*upstream{api}, nil)
	if addr, ok := m.BindAddr(m.internalPort); ok {
		t.Errorf("internal bind listens on %s", addr)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.internalPort), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("port %d accepts connections; an internal bind must be reached only through CONNECT", m.internalPort)
	}
}

// A client that gets a certificate for one name cannot send its
// request to another: the name checked is the name dialled.
func TestDynamicTLSHostMustBeTheServerName(t *testing.T) {
	api, other := startUpstream(t, "api.example.com"), startUpstream(t, "other.example.com")
	m := startDynamicTLSExample(t, []*upstream{api, other}, nil)
	status, conn := connect(t, m.port, fmt.Sprintf("api.example.com:%d", m.internalPort))
	if status != http.StatusOK {
		t.Fatalf("CONNECT status %d", status)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: "api.example.com", RootCAs: m.caPool})
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: other.example.com\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusMisdirectedRequest || strings.Contains(string(body), "saw") {
		t.Fatalf("status %d body %q; want 421 and nothing from other.example.com", resp.StatusCode, body)
	}
}

// Without a test dialer the gateway's own egress dialer runs: a name
// that resolves to loopback (where the admin port is) is refused.
func TestDynamicTLSKeepsTheOutboundPolicy(t *testing.T) {
	m := startDynamicTLSExample(t, nil, nil)
	resp, _ := m.get(t, "localhost")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d; want 502", resp.StatusCode)
	}
	if line := m.access.WaitFor(t, "status=502"); !strings.Contains(line, "tunnels never reach it") {
		t.Errorf("access log %q does not name the outbound policy", line)
	}
}

// transformations.response changes what the client gets: set replaces
// the backend's value, add appends, remove deletes, a value that cannot
// be computed removes the header; responseHeaderModifier on the same
// route still applies.
func TestTransformationsResponseChangesResponseHeaders(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Set", "backend")
		w.Header().Set("X-Add", "backend")
		w.Header().Set("X-Gone", "backend")
		w.Header().Set("X-Broken", "backend")
	}))
	t.Cleanup(be.Close)
	port := freePort(t)
	startGateway(t, simpleConfig(port, hostOf(be), `
transformations:
  response:
    set:
      x-set: "'gateway ' + request.path"
      x-broken: "request.headers['x-missing']"
    add:
      x-add: "'gateway'"
    remove: [x-gone]
responseHeaderModifier:
  set: {x-static: yes}`, ""), port)
	code, _, h := get(t, fmt.Sprintf("http://127.0.0.1:%d/p", port))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	want := map[string][]string{"X-Set": {"gateway /p"}, "X-Add": {"backend", "gateway"}, "X-Gone": nil, "X-Broken": nil, "X-Static": {"yes"}}
	for k, v := range want {
		if got := h.Values(k); len(got) != len(v) || strings.Join(got, ",") != strings.Join(v, ",") {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// dynamicCa's CA is checked at load: errors name the file, line and
// YAML path, never key material.
func TestDynamicCABadFilesAreLoadErrors(t *testing.T) {
	dir := t.TempDir()
	certs, _ := filepath.Abs("testdata/agentgateway/examples/mcp-tls/certs")
	caKey, _ := os.ReadFile(filepath.Join(certs, "ca-key.pem"))
	writeFile(t, filepath.Join(dir, "garbage.pem"), []byte("not a key"))
	cfg := func(cert, key string) string {
		return fmt.Sprintf(`binds:
- port: 3000
  tunnelProtocol: connect
  listeners: []
- port: 443
  mode: internal
  listeners:
  - protocol: HTTPS
    tls: {mode: dynamicCa, cert: %s, key: %s}
    routes:
    - backends: [{dynamic: {}}]
`, cert, key)
	}
	for _, tc := range []struct{ cert, key, want string }{
		// A leaf (no basicConstraints CA:TRUE) cannot sign.
		{certs + "/cert.pem", certs + "/key.pem", "config.yaml:9:10: binds[1].listeners[0].tls: " + certs + "/cert.pem is not a CA certificate"},
		{certs + "/ca-cert.pem", dir + "/garbage.pem", "config.yaml:9:10: binds[1].listeners[0].tls: load CA certificate and key: tls: failed to find any PEM data in key input"},
		{certs + "/ca-cert.pem", dir + "/missing.pem", "binds[1].listeners[0].tls: load CA certificate and key: open " + dir + "/missing.pem: no such file or directory"},
		// The CA's certificate with another key.
		{certs + "/ca-cert.pem", certs + "/key.pem", "binds[1].listeners[0].tls: load CA certificate and key: tls: private key does not match public key"},
	} {
		path := filepath.Join(dir, "config.yaml")
		writeFile(t, path, []byte(cfg(tc.cert, tc.key)))
		err := Validate(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cert %s key %s:\n got %v\nwant %s", tc.cert, tc.key, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), strings.Split(string(caKey), "\n")[1]) {
			t.Errorf("error shows key material: %v", err)
		}
	}
}
