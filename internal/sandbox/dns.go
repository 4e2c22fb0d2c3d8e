package sandbox

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

// zone is the customer's internal DNS zone: names under suffix and their
// addresses.
type zone struct {
	suffix  string // lower-case FQDN with trailing dot, e.g. "internal.example."
	mu      sync.RWMutex
	records map[string][]netip.Addr // lower-case FQDN with trailing dot
}

func newZone(suffix string) *zone {
	return &zone{suffix: dns.Fqdn(strings.ToLower(suffix)), records: map[string][]netip.Addr{}}
}

func (z *zone) set(name string, addrs ...netip.Addr) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.records[dns.Fqdn(strings.ToLower(name))] = addrs
}

func (z *zone) lookup(name string) ([]netip.Addr, bool) {
	z.mu.RLock()
	defer z.mu.RUnlock()
	a, ok := z.records[strings.ToLower(name)]
	return a, ok
}

// ServeDNS answers A and AAAA queries for the zone, NXDOMAIN for unknown
// names inside it, and REFUSED for anything outside it, like an internal
// authoritative server would.
func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	if !dns.IsSubDomain(z.suffix, strings.ToLower(q.Name)) {
		m.Rcode = dns.RcodeRefused
		w.WriteMsg(m)
		return
	}
	addrs, ok := z.lookup(q.Name)
	if !ok {
		m.Rcode = dns.RcodeNameError
		w.WriteMsg(m)
		return
	}
	for _, a := range addrs {
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 60}
		switch {
		case q.Qtype == dns.TypeA && a.Is4():
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IP(a.AsSlice())})
		case q.Qtype == dns.TypeAAAA && a.Is6():
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.IP(a.AsSlice())})
		}
	}
	w.WriteMsg(m)
}

// dnsServer is the zone served over UDP and TCP on port 53 of a node's
// tailnet address: reachable only through the tailnet.
type dnsServer struct {
	udp, tcp *dns.Server
}

func serveDNS(n *tailnet.Node, z *zone) (*dnsServer, error) {
	pc, err := n.Server().ListenPacket("udp", netip.AddrPortFrom(n.IPv4(), 53).String())
	if err != nil {
		return nil, fmt.Errorf("listen udp/53: %w", err)
	}
	ln, err := n.Server().Listen("tcp", ":53")
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("listen tcp/53: %w", err)
	}
	var started sync.WaitGroup
	started.Add(2)
	d := &dnsServer{
		udp: &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: started.Done},
		tcp: &dns.Server{Listener: ln, Handler: z, NotifyStartedFunc: started.Done},
	}
	go d.udp.ActivateAndServe()
	go d.tcp.ActivateAndServe()
	// Shutdown before the servers have started would be a no-op that
	// leaks them.
	started.Wait()
	return d, nil
}

func (d *dnsServer) close() {
	d.udp.Shutdown()
	d.tcp.Shutdown()
}

// AddInternalName publishes name (under InternalZone) in the tailnet's
// internal DNS.
func (s *Sandbox) AddInternalName(name string, addrs ...netip.Addr) error {
	return s.site.AddName(name, addrs...)
}
