package selfsigned

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"testing"
)

// TestClientsTrustingTheCertReachEveryHost: a TLS client whose only root
// is the certificate completes a handshake for each of its hosts, names
// and addresses alike, and refuses another name; the PEM files load as a
// key pair and are readable by their owner only.
func TestClientsTrustingTheCertReachEveryHost(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := WriteFiles(dir, "tailgate test", "app.example", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{certFile, keyFile} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", f, err, st.Mode().Perm())
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "app.example" || len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != "tailgate test" {
		t.Errorf("subject %v; want CN app.example, O tailgate test", leaf.Subject)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	dial := func(name string) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: name})
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, name := range []string{"app.example", "127.0.0.1"} {
		if err := dial(name); err != nil {
			t.Errorf("handshake for %s: %v", name, err)
		}
	}
	if err := dial("other.example"); err == nil {
		t.Error("handshake for other.example succeeded; want a name mismatch")
	}
}

// TestEachCertIsItsOwn: two certificates for the same host differ in key
// and serial, and no host is an error rather than a certificate for
// nothing.
func TestEachCertIsItsOwn(t *testing.T) {
	a, err := Cert("", "x.example")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Cert("", "x.example")
	if err != nil {
		t.Fatal(err)
	}
	la, _ := x509.ParseCertificate(a.Certificate[0])
	lb, _ := x509.ParseCertificate(b.Certificate[0])
	if la.SerialNumber.Cmp(lb.SerialNumber) == 0 || la.PublicKey.(*ecdsa.PublicKey).Equal(lb.PublicKey) {
		t.Error("two certificates share a serial or a key")
	}
	if len(la.Subject.Organization) != 0 || len(la.IPAddresses) != 0 || len(la.DNSNames) != 1 {
		t.Errorf("cert for x.example: O %v, IPs %v, names %v", la.Subject.Organization, la.IPAddresses, la.DNSNames)
	}
	if _, err := Cert("org"); err == nil {
		t.Error("a certificate for no host: no error")
	}
	if _, _, err := WriteFiles(t.TempDir()+"/missing", "", "x.example"); err == nil {
		t.Error("writing into a missing directory: no error")
	}
}
