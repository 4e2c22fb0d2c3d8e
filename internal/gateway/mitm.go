package gateway

// TLS interception (agentgateway's traffic-egress-proxy
// config-dynamic-tls.yaml): a `tunnelProtocol: connect` bind hands each
// tunnel to the `mode: internal` bind on the requested port. That bind
// is never opened on a network; its tunnels arrive through an in-memory
// listener and are served like any bind's connections (networkAuthorization,
// TLS, routes, policies). Its HTTPS listener's `tls: {mode: dynamicCa}`
// serves a leaf certificate minted for the client's SNI and signed by the
// configured CA, and its routes' `dynamic: {}` backends send each request
// to its own Host on the bind's port, through the same outbound policy
// as passthrough tunnels (egressPolicy).
//
// The name checked is the name dialled: a dynamic backend refuses a
// request whose Host differs from the TLS server name the leaf was
// minted for (421), so a client cannot get a certificate for one name
// and send its request to another. agentgateway does not check this.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/expiring"
	"github.com/tailgate-dev/tailgate/internal/gateway/httppolicy"
	"github.com/tailgate-dev/tailgate/internal/pipe"
	"github.com/tailgate-dev/tailgate/internal/target"
)

// Minted certificates are kept for leafCacheTTL, at most leafCacheSize
// of them per listener: agentgateway's defaults (5 minutes, 256). A leaf
// is valid from leafBackdate before it was minted (client clock skew)
// to leafValidity after, never past the CA's own expiry; agentgateway
// mints leaves valid for centuries, which a leaked leaf key would keep.
const (
	leafCacheTTL  = 5 * time.Minute
	leafCacheSize = 256
	leafBackdate  = time.Hour
	leafValidity  = 24 * time.Hour
)

// leafMinter issues server certificates signed by a dynamicCa listener's
// CA. Leaf keys are generated in memory and never written anywhere.
type leafMinter struct {
	ca    *x509.Certificate
	caDER []byte
	caKey crypto.Signer
	// leaves are minted leaves by lower-case server name, each kept for
	// leafCacheTTL.
	leaves *expiring.Cache[string, *tls.Certificate]
}

// newLeafMinter loads a CA certificate and its key (PEM files). Errors
// name the file and the problem, never key material.
func newLeafMinter(certFile, keyFile string) (*leafMinter, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load CA certificate and key: %w", err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate %s: %w", certFile, err)
	}
	switch {
	case !ca.BasicConstraintsValid || !ca.IsCA:
		return nil, fmt.Errorf("%s is not a CA certificate (basicConstraints CA:TRUE is missing); dynamicCa signs leaf certificates with it", certFile)
	case ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("%s may not sign certificates (its keyUsage lacks keyCertSign)", certFile)
	case time.Now().After(ca.NotAfter):
		return nil, fmt.Errorf("CA certificate %s expired on %s", certFile, ca.NotAfter.UTC().Format(time.DateOnly))
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the key in %s cannot sign", keyFile)
	}
	return &leafMinter{ca: ca, caDER: pair.Certificate[0], caKey: key, leaves: expiring.New[string, *tls.Certificate](leafCacheSize)}, nil
}

// certFor is the leaf for a client's SNI, from the cache or minted now.
func (m *leafMinter) certFor(serverName string) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	if !validDNSName(name) {
		// No SNI (a client dialling an IP) or not a host name: there is
		// no name to mint for, and the request could not be routed.
		return nil, fmt.Errorf("dynamicCa: no certificate for server name %q (a DNS name is required)", serverName)
	}
	now := time.Now()
	if cert, ok := m.leaves.Get(name, now); ok {
		return cert, nil
	}
	// Minted outside any lock: two handshakes for a new name may both
	// mint; one of the two leaves is kept.
	cert, err := m.mint(name, now)
	if err != nil {
		return nil, err
	}
	m.leaves.Put(name, cert, now.Add(leafCacheTTL), now)
	return cert, nil
}

// mint issues a leaf for name: an ECDSA P-256 key, the name as the only
// SAN and as the common name, serverAuth only.
func (m *leafMinter) mint(name string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(leafValidity)
	if notAfter.After(m.ca.NotAfter) {
		notAfter = m.ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             now.Add(-leafBackdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.ca, &key.PublicKey, m.caKey)
	if err != nil {
		return nil, fmt.Errorf("dynamicCa: sign a certificate for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, m.caDER}, PrivateKey: key, Leaf: leaf}, nil
}

// validDNSName reports whether name is a lower-case DNS host name (not
// an IP address, no wildcard, no trailing dot): the DNS rules are the
// ones targets are checked by.
func validDNSName(name string) bool {
	if net.ParseIP(name) != nil {
		return false
	}
	n, problem := target.NormaliseName(name)
	return problem == "" && n == name
}

// dynamicBackend sends each request to its own Host on the bind's port
// (agentgateway's `dynamic: {}` backend of an HTTP route).
type dynamicBackend struct {
	port  string
	proxy http.Handler
}

func (b *dynamicBackend) Name() string { return "dynamic" }

func (b *dynamicBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := requestHost(r)
	ri := infoFrom(r.Context())
	if r.TLS != nil && !strings.EqualFold(host, strings.TrimSuffix(r.TLS.ServerName, ".")) {
		if ri != nil {
			ri.denyPolicy = "dynamic"
			ri.denyReason = fmt.Sprintf("Host %s differs from the TLS server name %q", host, r.TLS.ServerName)
		}
		http.Error(w, "the Host of the request must be the TLS server name", http.StatusMisdirectedRequest)
		return
	}
	if ri != nil {
		ri.backend = "dynamic/" + net.JoinHostPort(host, b.port)
	}
	b.proxy.ServeHTTP(w, r)
}

// dynamicBackend builds a dynamic backend for the bind being compiled.
// It dials through the egress dialer (egressPolicy), never the shared
// transport's plain one: the destination is whatever name the client
// sent. backendTLS makes it speak TLS to that name, verified against
// the system's roots (or backendTLS.root).
func (c *compiler) dynamicBackend(pol *httppolicy.Set) Backend {
	base, ok := c.deps.transport.(*http.Transport)
	if !ok {
		base = newTransport()
	}
	t := base.Clone()
	t.DialContext = c.deps.egressDial
	if t.DialContext == nil {
		t.DialContext = defaultEgressDial
	}
	scheme := "http"
	var transport http.RoundTripper = t
	if pol != nil {
		if pol.BackendTLS != nil {
			scheme = "https"
			t.TLSClientConfig = pol.BackendTLS.Clone()
			if t.TLSClientConfig.RootCAs == nil && c.deps.egressRoots != nil {
				t.TLSClientConfig.RootCAs = c.deps.egressRoots
			}
		}
		if pol.Retry != nil {
			transport = &retryTransport{next: transport, spec: pol.Retry}
		}
	}
	c.Own(idleCloser{t})
	port := strconv.Itoa(c.bindPort)
	return &dynamicBackend{port: port, proxy: newProxy(transport, func(r *http.Request) *url.URL {
		return &url.URL{Scheme: scheme, Host: net.JoinHostPort(requestHost(r), port)}
	})}
}

// idleCloser closes a snapshot's own transport's idle connections when
// the snapshot is replaced.
type idleCloser struct{ t *http.Transport }

func (c idleCloser) Close() error { c.t.CloseIdleConnections(); return nil }

// tunnelAddr names an internal bind where a network address would be.
type tunnelAddr int

func (a tunnelAddr) Network() string { return "tunnel" }
func (a tunnelAddr) String() string  { return fmt.Sprintf("internal:%d", int(a)) }

// tunnelToInternal opens the tunnel and hands it to the internal bind on
// port, which serves it as a connection of its own (TLS, routes,
// policies; one access-log line per request). The CONNECT host is not
// dialled: a dynamic backend dials each request's Host, which must be
// the TLS server name.
func (g *Gateway) tunnelToInternal(w *statusWriter, r *http.Request, ri *requestInfo, port int) {
	g.mu.Lock()
	bs := g.servers[port]
	g.mu.Unlock()
	var tl *pipe.Listener
	if bs != nil {
		tl, _ = bs.ln.(*pipe.Listener)
	}
	if tl == nil {
		ri.denyReason = "internal bind not running"
		http.Error(w, "the internal bind is not running", http.StatusServiceUnavailable)
		return
	}
	ri.backend = fmt.Sprintf("bind/%d", port)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		ri.upstreamErr = err
		http.Error(w, "cannot open a tunnel on this connection", http.StatusInternalServerError)
		return
	}
	w.status = http.StatusOK
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		conn.Close()
		ri.upstreamErr = err
		return
	}
	var client net.Conn = conn
	if n := brw.Reader.Buffered(); n > 0 {
		head, _ := brw.Reader.Peek(n)
		client = readerConn{Conn: conn, r: io.MultiReader(bytes.NewReader(bytes.Clone(head)), conn)}
	}
	if !tl.Put(client) {
		conn.Close()
		ri.upstreamErr = errors.New("internal bind stopped")
	}
}
