// Package spiffe gives the gateway its SPIFFE identity: the X.509-SVID and
// trust bundle it streams from the SPIFFE Workload API (a SPIRE agent's
// socket), and the TLS configs built on them — a listener that serves the
// SVID and requires a client SVID of the same trust domain, and backend
// mTLS that presents the SVID and verifies the upstream's SPIFFE ID.
//
// The TLS configs read the current SVID at every handshake, so a rotated
// SVID is used by new connections without rebuilding anything. Session
// resumption is off: a resumed session would skip re-verifying a
// short-lived peer SVID.
package spiffe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// ConnectTimeout bounds the wait for the first SVID at start.
const ConnectTimeout = 15 * time.Second

// Workload is the gateway's SPIFFE identity. Its zero value has no source
// yet: handshakes through its configs fail (closed) until Attach.
type Workload struct {
	src atomic.Pointer[workloadapi.X509Source]
}

// Connect opens the Workload API at endpoint (unix:///path) and waits for
// the first SVID and bundle. A socket that is not there fails at once; a
// socket that answers no SVID fails after ConnectTimeout.
func Connect(ctx context.Context, endpoint string) (*workloadapi.X509Source, error) {
	path, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok {
		return nil, fmt.Errorf("spiffe workload API %s: endpoint must be unix:///path", endpoint)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("spiffe workload API %s: %w (is the SPIRE agent running?)", endpoint, err)
	}
	ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(endpoint)))
	if err != nil {
		return nil, fmt.Errorf("spiffe workload API %s: no X.509-SVID received: %w", endpoint, err)
	}
	return src, nil
}

// Attach makes src the identity every config of w uses from now on.
func (w *Workload) Attach(src *workloadapi.X509Source) { w.src.Store(src) }

// Close closes the attached source, if any.
func (w *Workload) Close() error {
	if src := w.src.Swap(nil); src != nil {
		return src.Close()
	}
	return nil
}

var errNotConnected = errors.New("spiffe workload API not connected")

// GetX509SVID is the current SVID (x509svid.Source).
func (w *Workload) GetX509SVID() (*x509svid.SVID, error) {
	src := w.src.Load()
	if src == nil {
		return nil, errNotConnected
	}
	return src.GetX509SVID()
}

// GetX509BundleForTrustDomain is the trust bundle of td (x509bundle.Source).
func (w *Workload) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	src := w.src.Load()
	if src == nil {
		return nil, errNotConnected
	}
	return src.GetX509BundleForTrustDomain(td)
}

// sameTrustDomain authorizes peers of the gateway's own trust domain only,
// as agentgateway does (no federation); source.spiffeId is there for finer
// rules.
func (w *Workload) sameTrustDomain(id spiffeid.ID, _ [][]*x509.Certificate) error {
	svid, err := w.GetX509SVID()
	if err != nil {
		return err
	}
	if !id.MemberOf(svid.ID.TrustDomain()) {
		return fmt.Errorf("peer %s is not in trust domain %s", id, svid.ID.TrustDomain())
	}
	return nil
}

// ServerTLS is a listener's config: serve the SVID, require a client SVID
// that chains to the bundle of the gateway's trust domain.
func (w *Workload) ServerTLS(nextProtos []string) *tls.Config {
	cfg := tlsconfig.MTLSServerConfig(w, w, w.sameTrustDomain)
	cfg.MinVersion = tls.VersionTLS12
	cfg.NextProtos = nextProtos
	cfg.SessionTicketsDisabled = true
	return cfg
}

// ClientTLS is backend mTLS: present the SVID, accept an upstream SVID of
// the gateway's trust domain whose ID is one of ids (any, when ids is
// empty). ids must be valid SPIFFE IDs (see ParseIDs).
func (w *Workload) ClientTLS(ids []spiffeid.ID, nextProtos []string) *tls.Config {
	auth := tlsconfig.Authorizer(w.sameTrustDomain)
	if len(ids) > 0 {
		one := tlsconfig.AuthorizeOneOf(ids...)
		auth = func(id spiffeid.ID, chains [][]*x509.Certificate) error {
			if err := w.sameTrustDomain(id, chains); err != nil {
				return err
			}
			return one(id, chains)
		}
	}
	cfg := tlsconfig.MTLSClientConfig(w, w, auth)
	cfg.MinVersion = tls.VersionTLS12
	cfg.NextProtos = nextProtos
	return cfg
}

// ParseIDs parses subjectAltNames as SPIFFE IDs.
func ParseIDs(sans []string) ([]spiffeid.ID, error) {
	ids := make([]spiffeid.ID, 0, len(sans))
	for _, s := range sans {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a SPIFFE ID: %w", s, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// PeerID is the SPIFFE ID of a verified TLS peer ("" if it sent none).
func PeerID(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return ""
	}
	return id.String()
}
