package sandbox

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
	"tailscale.com/types/logger"

	"github.com/tailgate-dev/tailgate/internal/selfsigned"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

// Site is a customer's private network behind a subnet-router node: web
// apps at addresses inside the router's subnets, served in-process by the
// router's fallback TCP handler, and an internal DNS zone served on the
// router's tailnet address (point the tailnet's split DNS at it). Nothing
// is served on, or forwarded to, the host network. The sandbox runs one;
// tests on another control server (headscale) run one on their own router.
type Site struct {
	subnets []netip.Prefix
	logf    logger.Logf
	apps    *appTable
	zone    *zone
	dns     *dnsServer
}

// ServeSite starts a site on router for the DNS zone zoneName (e.g.
// "internal.example") and apps inside subnets.
func ServeSite(router *tailnet.Node, zoneName string, subnets []netip.Prefix, logf logger.Logf) (*Site, error) {
	if logf == nil {
		logf = logger.Discard
	}
	s := &Site{subnets: subnets, logf: logf, apps: newAppTable(), zone: newZone(zoneName)}
	router.Server().RegisterFallbackTCPHandler(s.apps.fallback)
	var err error
	if s.dns, err = serveDNS(router, s.zone); err != nil {
		return nil, fmt.Errorf("internal DNS: %w", err)
	}
	return s, nil
}

// ServeApp serves h at addr, inside one of the site's subnets. With
// tlsNames set it serves HTTPS with a self-signed certificate for them.
func (s *Site) ServeApp(addr netip.AddrPort, h http.Handler, tlsNames ...string) error {
	inside := false
	for _, p := range s.subnets {
		inside = inside || p.Contains(addr.Addr())
	}
	if !inside {
		return fmt.Errorf("sandbox: %v is not behind the router (%v)", addr, s.subnets)
	}
	// Probes that connect and hang up (tailgate warms paths that way) are
	// not errors worth printing.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: logger.StdLogger(s.logf)}
	if len(tlsNames) > 0 {
		cert, err := selfsigned.Cert("tailgate sandbox", tlsNames...)
		if err != nil {
			return err
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	s.apps.serve(addr, srv)
	return nil
}

// AddName publishes name, which must be inside the site's zone, in its
// internal DNS.
func (s *Site) AddName(name string, addrs ...netip.Addr) error {
	if !dns.IsSubDomain(s.zone.suffix, dns.Fqdn(strings.ToLower(name))) {
		return fmt.Errorf("sandbox: %s is not inside the zone %s", name, s.zone.suffix)
	}
	s.zone.set(name, addrs...)
	return nil
}

// Close stops the site's apps and DNS server.
func (s *Site) Close() {
	s.dns.close()
	s.apps.close()
}
