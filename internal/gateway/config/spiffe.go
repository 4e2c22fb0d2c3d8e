package config

import (
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// checkSpiffe checks config.spiffe.endpoint: the Workload API is a local
// unix socket (unix:///path), the only transport a SPIRE agent serves
// workloads on.
func (d *decoder) checkSpiffe(f *File) {
	if f.Config == nil || f.Config.Spiffe == nil {
		return
	}
	d.spiffe = true
	s := f.Config.Spiffe
	if s.Endpoint == "" {
		return // missing or not a string: reported already
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || u.Scheme != "unix" || u.Host != "" || !path.IsAbs(u.Path) || u.RawQuery != "" || u.Fragment != "" {
		d.failAt(s.Pos, "config.spiffe.endpoint", "expected unix:///path/to/socket, got %q", s.Endpoint)
	}
}

// spiffeOff is the error for tls.spiffe or backendTLS.spiffe in a file
// that says nowhere where the Workload API is.
const spiffeOff = "spiffe needs config.spiffe.endpoint (the SPIFFE Workload API socket)"

// checkListenerTLS: a listener serves either PEM files or the SVID.
func (d *decoder) checkListenerTLS(f *File, t *TLS, path string) {
	if t.Mode == "dynamicCa" {
		if t.Cert == "" || t.Key == "" {
			d.failAt(t.Pos, path, "mode: dynamicCa needs cert and key: the CA (PEM files) that signs the certificates it mints")
		}
		if t.Spiffe != nil {
			d.failAt(t.Spiffe.Pos, path+".spiffe", "spiffe cannot be combined with mode: dynamicCa (the CA in cert/key signs the certificates)")
		}
		return
	}
	if t.Spiffe == nil {
		if t.Cert == "" || t.Key == "" {
			d.failAt(t.Pos, path, "set cert and key (PEM files), or spiffe: {}")
		}
		return
	}
	if t.Cert != "" || t.Key != "" {
		d.failAt(t.Spiffe.Pos, path+".spiffe", "spiffe cannot be combined with cert/key (the SVID is the certificate)")
	}
	if !d.spiffe {
		d.failAt(t.Spiffe.Pos, path+".spiffe", spiffeOff)
	}
}

// checkBackendSpiffe: the SVID replaces the client certificate and the
// bundle the roots, and subjectAltNames are SPIFFE IDs.
func (d *decoder) checkBackendSpiffe(t *BackendTLS, path string) {
	if !d.spiffe {
		d.failAt(t.Spiffe.Pos, path+".spiffe", spiffeOff)
	}
	var clash []string
	for _, c := range []struct {
		set  bool
		name string
	}{{t.Cert != "", "cert"}, {t.Key != "", "key"}, {t.Root != "", "root"}, {t.Insecure, "insecure"}, {t.InsecureHost, "insecureHost"}} {
		if c.set {
			clash = append(clash, c.name)
		}
	}
	if len(clash) > 0 {
		d.failAt(t.Spiffe.Pos, path+".spiffe", "spiffe cannot be combined with %s", strings.Join(clash, "/"))
	}
	for i, san := range t.SubjectAltNames {
		if _, err := spiffeid.FromString(san); err != nil {
			d.failAt(t.Pos, fmt.Sprintf("%s.subjectAltNames[%d]", path, i), "with spiffe, subjectAltNames are SPIFFE IDs (spiffe://trust-domain/path), got %q: %v", san, err)
		}
	}
}
