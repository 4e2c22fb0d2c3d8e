package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tailgate-dev/tailgate/internal/gateway/spiffe/spiffetest"
)

const (
	gatewayID  = "spiffe://example.org/ns/default/sa/gateway"
	clientID   = "spiffe://example.org/ns/default/sa/client"
	upstreamID = "spiffe://example.org/ns/default/sa/upstream"
)

// spiffeExample runs agentgateway's traffic-spiffe example against a
// stand-in SPIRE agent: the HTTPS bind on one port, the backend-mTLS bind
// on another, the upstream replaced by upstreamHost.
type spiffeExample struct {
	ca        *spiffetest.CA
	agent     *spiffetest.Agent
	https     int // tls.spiffe listener
	mtls      int // backendTLS.spiffe listener
	gw        *testGateway
	upstreams atomic.Int64 // requests the upstream answered
}

func startSpiffeExample(t *testing.T, upstreamSVID string) *spiffeExample {
	t.Helper()
	e := &spiffeExample{ca: spiffetest.NewCA(t, "example.org")}
	e.agent = spiffetest.StartAgent(t, e.ca, e.ca.Mint(t, gatewayID))
	up := e.upstream(t, upstreamSVID)
	src, err := os.ReadFile("testdata/agentgateway/examples/traffic-spiffe/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e.https, e.mtls = freePort(t), freePort(t)
	cfg := strings.NewReplacer(
		"unix:///tmp/spire-agent/public/api.sock", e.agent.Endpoint,
		"- port: 3000", fmt.Sprintf("- port: %d", e.https),
		"- port: 3001", fmt.Sprintf("- port: %d", e.mtls),
		"upstream.default.svc.cluster.local:8443", up,
	).Replace(string(src))
	e.gw = startGateway(t, cfg, e.https)
	return e
}

// upstream is an HTTPS server presenting an SVID for id that requires a
// client SVID of the trust domain and answers with the caller's ID.
func (e *spiffeExample) upstream(t *testing.T, id string) string {
	svid := e.ca.Mint(t, id)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.upstreams.Add(1)
		peer, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "upstream saw %s", peer)
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{svid.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    e.ca.Pool(),
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

// client is an HTTPS client presenting svid (none if nil) that accepts
// the gateway's SVID from ca's trust domain.
func spiffeClient(ca *spiffetest.CA, svid *spiffetest.SVID) *http.Client {
	cfg := &tls.Config{
		// The gateway's SVID has no DNS name; verify its chain and ID.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	}
	if svid != nil {
		cfg.Certificates = []tls.Certificate{svid.TLS}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

func (e *spiffeExample) get(c *http.Client) (string, *tls.ConnectionState, error) {
	resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/", e.https))
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.TLS, err
}

func TestSpiffeListenerTellsTheClientItsID(t *testing.T) {
	e := startSpiffeExample(t, upstreamID)
	body, cs, err := e.get(spiffeClient(e.ca, e.ca.Mint(t, clientID)))
	if err != nil {
		t.Fatal(err)
	}
	if want := "Your SPIFFE ID is: " + clientID; body != want {
		t.Errorf("body %q, want %q", body, want)
	}
	if got, _ := x509svid.IDFromCert(cs.PeerCertificates[0]); got.String() != gatewayID {
		t.Errorf("gateway served %s, want its SVID %s", got, gatewayID)
	}
}

func TestSpiffeListenerRefusesClientsWithoutATrustedSVID(t *testing.T) {
	e := startSpiffeExample(t, upstreamID)
	other := spiffetest.NewCA(t, "other.org")
	for name, c := range map[string]*http.Client{
		"no certificate":     spiffeClient(e.ca, nil),
		"other trust domain": spiffeClient(e.ca, other.Mint(t, "spiffe://other.org/ns/default/sa/client")),
		// Same ID, but not signed by example.org's CA.
		"forged example.org": spiffeClient(e.ca, other.Mint(t, clientID)),
	} {
		body, _, err := e.get(c)
		if err == nil {
			t.Errorf("%s: got %q; want the handshake refused", name, body)
		}
	}
}

func TestSpiffeRotatedSVIDServesNewConnections(t *testing.T) {
	e := startSpiffeExample(t, upstreamID)
	c := spiffeClient(e.ca, e.ca.Mint(t, clientID))
	if _, cs, err := e.get(c); err != nil {
		t.Fatal(err)
	} else if id, _ := x509svid.IDFromCert(cs.PeerCertificates[0]); id.String() != gatewayID {
		t.Fatalf("before rotation the gateway serves %s, want %s", id, gatewayID)
	}
	const renewed = "spiffe://example.org/ns/default/sa/gateway-renewed"
	e.agent.Rotate(e.ca.Mint(t, renewed))
	// The push reaches the gateway asynchronously; each attempt is a new
	// connection (no keep-alive).
	var served string
	for range 500 {
		_, cs, err := e.get(c)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := x509svid.IDFromCert(cs.PeerCertificates[0])
		if served = id.String(); served == renewed {
			return
		}
	}
	t.Fatalf("gateway still serves %s after rotation to %s", served, renewed)
}

func TestSpiffeBackendTLSReachesTheUpstreamWithTheGatewaySVID(t *testing.T) {
	e := startSpiffeExample(t, upstreamID)
	code, body, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/", e.mtls))
	if code != 200 || body != "upstream saw "+gatewayID {
		t.Fatalf("got %d %q; want 200 from the upstream seeing %s", code, body, gatewayID)
	}
}

func TestSpiffeBackendTLSRefusesAnUpstreamWithAnotherID(t *testing.T) {
	e := startSpiffeExample(t, "spiffe://example.org/ns/default/sa/impostor")
	code, body, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/", e.mtls))
	if code < 500 {
		t.Errorf("got %d %q; want a gateway error", code, body)
	}
	if n := e.upstreams.Load(); n != 0 {
		t.Errorf("the impostor upstream got %d requests", n)
	}
}

func TestSpiffeWorkloadAPIUnreachableAtStartIsALoadError(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "missing.sock")
	path := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("config:\n  spiffe:\n    endpoint: unix://%s\nbinds:\n- port: %d\n  listeners:\n  - protocol: HTTPS\n    tls:\n      spiffe: {}\n    routes:\n    - policies:\n        directResponse: {status: 200}\n", sock, freePort(t))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := New(Options{ConfigPath: path, ReloadInterval: -1})
	if err == nil {
		g.Close()
		t.Fatal("gateway started without its SPIFFE identity")
	}
	for _, want := range []string{"config.spiffe", "unix://" + sock, "no such file", "SPIRE agent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// A reload keeps the identity connected at start; one that moves
// config.spiffe is refused, as agentgateway reads it at start only.
func TestSpiffeReloadKeepsTheIdentity(t *testing.T) {
	e := startSpiffeExample(t, upstreamID)
	cfg, err := os.ReadFile(e.gw.path)
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(cfg), e.agent.Endpoint, "unix:///tmp/elsewhere.sock", 1)
	writeFile(t, e.gw.path, []byte(moved))
	if err := e.gw.Reload(); err == nil || !strings.Contains(err.Error(), "config.spiffe changed; restart the gateway") {
		t.Fatalf("reload with another endpoint: %v; want it refused", err)
	}
	// The running config, and its identity, keep serving.
	body, _, err := e.get(spiffeClient(e.ca, e.ca.Mint(t, clientID)))
	if err != nil || body != "Your SPIFFE ID is: "+clientID {
		t.Fatalf("after the refused reload: %q, %v", body, err)
	}
	writeFile(t, e.gw.path, []byte(strings.Replace(string(cfg), `"Your SPIFFE ID is: "`, `"Hello "`, 1)))
	if err := e.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	body, _, err = e.get(spiffeClient(e.ca, e.ca.Mint(t, clientID)))
	if err != nil || body != "Hello "+clientID {
		t.Fatalf("after a reload: %q, %v", body, err)
	}
}
