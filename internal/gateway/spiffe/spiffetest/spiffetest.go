// Package spiffetest stands in for a SPIRE agent in tests: a test CA that
// mints X.509-SVIDs for one trust domain, and a SPIFFE Workload API server
// on a unix socket that streams the workload's SVID and bundle and pushes
// a new one on Rotate.
package spiffetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
)

// CA is a trust domain's signing authority.
type CA struct {
	TrustDomain string
	Cert        *x509.Certificate
	key         *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA for trustDomain (e.g. "example.org").
func NewCA(t testing.TB, trustDomain string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{trustDomain}},
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{TrustDomain: trustDomain, Cert: cert, key: key}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// Pool is a cert pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// SVID is one minted identity.
type SVID struct {
	ID      string
	CertDER []byte
	KeyDER  []byte // PKCS#8, as the Workload API sends it
	TLS     tls.Certificate
}

// Mint issues an X.509-SVID for id (a spiffe:// URI), as SPIRE does: the
// ID is the only SAN.
func (ca *CA) Mint(t testing.TB, id string) *SVID {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		URIs:         []*url.URL{u},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &SVID{ID: id, CertDER: der, KeyDER: keyDER, TLS: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}
}

// Agent is a Workload API server serving one workload's SVID.
type Agent struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	// Endpoint is the unix:// address for config.spiffe.endpoint.
	Endpoint string
	ca       *CA

	mu      sync.Mutex
	current *workload.X509SVIDResponse
	changed chan struct{} // closed and replaced on Rotate
}

// StartAgent serves svid (minted by ca) on a fresh unix socket until the
// test ends.
func StartAgent(t testing.TB, ca *CA, svid *SVID) *Agent {
	t.Helper()
	// A short directory: a unix socket path has a ~108 byte limit, which
	// t.TempDir() under a long test name can exceed.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{Endpoint: "unix://" + sock, ca: ca, changed: make(chan struct{})}
	a.set(svid)
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, a)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return a
}

func (a *Agent) set(svid *SVID) {
	a.current = &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId: svid.ID, X509Svid: svid.CertDER, X509SvidKey: svid.KeyDER, Bundle: a.ca.Cert.Raw,
	}}}
}

// Rotate pushes svid to every open stream, as an agent does when it
// renews the workload's SVID.
func (a *Agent) Rotate(svid *SVID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.set(svid)
	close(a.changed)
	a.changed = make(chan struct{})
}

// FetchX509SVID sends the current SVID, then each rotation.
func (a *Agent) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	for {
		a.mu.Lock()
		resp, changed := a.current, a.changed
		a.mu.Unlock()
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

// FetchX509Bundles sends the trust domain's bundle (it never changes here).
func (a *Agent) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	if err := stream.Send(&workload.X509BundlesResponse{Bundles: map[string][]byte{"spiffe://" + a.ca.TrustDomain: a.ca.Cert.Raw}}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}
