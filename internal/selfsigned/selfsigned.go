// Package selfsigned makes self-signed P-256 server certificates for
// listeners nobody outside the machine reaches: the sandbox's HTTPS apps,
// the gateway's TLS tests and the gateway benchmark's HTTPS listeners.
// A client trusts one by taking the certificate itself as its root.
package selfsigned

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity is how long a certificate is valid, from an hour before it
// was made (so that a clock a little behind still accepts it).
const Validity = 90 * 24 * time.Hour

// Cert is a certificate for hosts, each a DNS name or an IP address (the
// first is also its common name), with org as its subject's organization
// ("" for none).
func Cert(org string, hosts ...string) (tls.Certificate, error) {
	der, key, err := generate(org, hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// WriteFiles writes Cert's certificate and key as PEM to dir/cert.pem
// and dir/key.pem (mode 0600), the files a listener's tls: {cert, key}
// names, and returns their paths.
func WriteFiles(dir, org string, hosts ...string) (certFile, keyFile string, err error) {
	der, key, err := generate(org, hosts)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func generate(org string, hosts []string) (der []byte, key *ecdsa.PrivateKey, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("selfsigned: no host to certify")
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	// A random serial: clients may refuse two certificates of one issuer
	// and serial, and every certificate here is its own issuer.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if org != "" {
		tmpl.Subject.Organization = []string{org}
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return der, key, err
}
