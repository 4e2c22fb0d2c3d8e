package tailnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/egress"

	"github.com/miekg/dns"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"
	"tailscale.com/types/dnstype"
)

// ErrNameNotInTailnet means the tailnet's DNS has no address for a name:
// it is neither a MagicDNS name nor inside a split-DNS zone that answers.
// It is the run proxy's own error (one sentinel, one text), so a refusal
// needs no translation between the two.
var ErrNameNotInTailnet = egress.ErrNameNotInTailnet

// NameError wraps ErrNameNotInTailnet (or another resolution failure)
// with the name that failed.
type NameError struct {
	Name string
	Err  error
}

func (e *NameError) Error() string { return fmt.Sprintf("resolve %s: %v", e.Name, e.Err) }
func (e *NameError) Unwrap() error { return e.Err }

// LookupNetIP resolves host through the tailnet's DNS only and returns its
// addresses. An IP literal is returned as is.
//
// MagicDNS names (the node's peers) and the tailnet's extra records are
// answered from what the node was told (its status and DNS config).
// Names inside a split-DNS zone are sent, over TCP through the tailnet
// (DialTCP), to that zone's resolvers.
// Nothing else resolves: not the host resolver, and not the tailnet's
// global nameservers.
//
// Why not tsnet's own resolver (LocalClient.QueryDNS) for split DNS: in
// tailscale.com v1.102 its forwarder races UDP over the host network
// against TCP through the tailnet, so an internal name leaks to, and may
// be answered by, whatever listens on the host's network.
func (n *Node) LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	fqdn := dns.Fqdn(strings.ToLower(host))
	if _, ok := dns.IsDomainName(fqdn); !ok || fqdn == "." {
		return nil, &NameError{Name: host, Err: errors.New("not a valid DNS name")}
	}
	view, err := n.dnsView(ctx)
	if err != nil {
		return nil, &NameError{Name: host, Err: err}
	}
	if dns.CountLabel(fqdn) == 1 && n.magicDNSSuffix != "" {
		// A bare device name ("staging-box") means the device's MagicDNS
		// name, as it does on any Tailscale client.
		fqdn = fqdn + n.magicDNSSuffix + "."
	}
	if addrs := view.localAnswer(fqdn); len(addrs) > 0 {
		return addrs, nil
	}
	resolvers := splitDNSResolvers(view.dns, fqdn)
	if len(resolvers) == 0 {
		return nil, &NameError{Name: host, Err: ErrNameNotInTailnet}
	}
	// A and AAAA are asked at once: a lookup is on the path of a run's
	// every new connection.
	qtypes := []uint16{dns.TypeA, dns.TypeAAAA}
	got, errs := make([][]netip.Addr, len(qtypes)), make([]error, len(qtypes))
	var wg sync.WaitGroup
	for i, qtype := range qtypes {
		wg.Go(func() { got[i], errs[i] = n.querySplit(ctx, view.status, resolvers, fqdn, qtype) })
	}
	wg.Wait()
	var addrs []netip.Addr
	var lastErr error
	for i := range qtypes {
		if errs[i] != nil {
			lastErr = errs[i]
			continue
		}
		addrs = append(addrs, got[i]...)
	}
	if len(addrs) == 0 {
		if lastErr == nil {
			lastErr = ErrNameNotInTailnet
		}
		return nil, &NameError{Name: host, Err: lastErr}
	}
	return addrs, nil
}

// dnsView is what the node knows about names in its tailnet: its own and
// its peers' MagicDNS names and addresses, and the tailnet's DNS
// configuration (extra records, split-DNS routes).
//
// It is read through the LocalAPI (Status and DNSConfig) rather than from
// ipn.Notify.NetMap, which tailscale.com deprecates (only Windows still
// sends it after the first message) and will remove.
type dnsView struct {
	status *ipnstate.Status
	dns    *tailcfg.DNSConfig
}

// dnsView reads the node's current view; it fails until the node has a
// network map.
func (n *Node) dnsView(ctx context.Context) (dnsView, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := n.lc.Status(ctx)
	if err != nil {
		return dnsView{}, fmt.Errorf("read tailnet status: %w", err)
	}
	cfg, err := n.lc.DNSConfig(ctx)
	if err != nil {
		return dnsView{}, fmt.Errorf("read tailnet DNS config: %w", err)
	}
	if cfg == nil {
		cfg = new(tailcfg.DNSConfig)
	}
	return dnsView{status: st, dns: cfg}, nil
}

// localAnswer answers fqdn from the view: a device's MagicDNS name or one
// of the tailnet's extra records.
func (v dnsView) localAnswer(fqdn string) []netip.Addr {
	var out []netip.Addr
	nodeAddrs := func(ps *ipnstate.PeerStatus) {
		if ps != nil && ps.DNSName != "" && strings.EqualFold(dns.Fqdn(ps.DNSName), fqdn) {
			out = append(out, ps.TailscaleIPs...)
		}
	}
	nodeAddrs(v.status.Self)
	for _, ps := range v.status.Peer {
		nodeAddrs(ps)
	}
	for _, r := range v.dns.ExtraRecords {
		if strings.EqualFold(dns.Fqdn(r.Name), fqdn) {
			if ip, err := netip.ParseAddr(r.Value); err == nil {
				out = append(out, ip)
			}
		}
	}
	return out
}

// splitDNSResolvers finds the resolvers of the most specific split-DNS
// route for fqdn. Only plain DNS resolvers count: DoH and DoT resolvers
// are fetched by name over the host network.
func splitDNSResolvers(cfg *tailcfg.DNSConfig, fqdn string) []netip.AddrPort {
	best := -1
	var bestRes []*dnstype.Resolver
	for suffix, rs := range cfg.Routes {
		s := dns.Fqdn(strings.ToLower(suffix))
		if dns.IsSubDomain(s, fqdn) && len(s) > best {
			best, bestRes = len(s), rs
		}
	}
	var out []netip.AddrPort
	for _, r := range bestRes {
		if ap, err := netip.ParseAddrPort(r.Addr); err == nil {
			out = append(out, ap)
		} else if ip, err := netip.ParseAddr(r.Addr); err == nil {
			out = append(out, netip.AddrPortFrom(ip, 53))
		}
	}
	return out
}

// querySplit asks a split-DNS zone's resolvers over TCP through the
// tailnet; the first answer wins.
func (n *Node) querySplit(ctx context.Context, st *ipnstate.Status, resolvers []netip.AddrPort, fqdn string, qtype uint16) ([]netip.Addr, error) {
	q := new(dns.Msg)
	q.SetQuestion(fqdn, qtype)
	var lastErr error
	for _, r := range resolvers {
		qctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		// A node that just joined would otherwise stall on its first
		// connection to the resolver.
		n.warmPath(qctx, st, r.Addr())
		addrs, err := n.exchangeTCP(qctx, r, q)
		cancel()
		if err == nil {
			return addrs, nil
		}
		lastErr = err
		if errors.Is(err, ErrNameNotInTailnet) {
			return nil, err
		}
	}
	return nil, lastErr
}

func (n *Node) exchangeTCP(ctx context.Context, resolver netip.AddrPort, q *dns.Msg) ([]netip.Addr, error) {
	c, err := n.DialTCP(ctx, resolver)
	if err != nil {
		return nil, fmt.Errorf("tailnet DNS resolver %s: %w", resolver, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	dc := &dns.Conn{Conn: c}
	if err := dc.WriteMsg(q); err != nil {
		return nil, fmt.Errorf("tailnet DNS resolver %s: %w", resolver, err)
	}
	resp, err := dc.ReadMsg()
	if err != nil {
		return nil, fmt.Errorf("tailnet DNS resolver %s: %w", resolver, err)
	}
	raw, err := resp.Pack()
	if err != nil {
		return nil, err
	}
	return answerAddrs(raw)
}

func answerAddrs(raw []byte) ([]netip.Addr, error) {
	var msg dns.Msg
	if err := msg.Unpack(raw); err != nil {
		return nil, fmt.Errorf("parse DNS answer: %w", err)
	}
	switch msg.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, ErrNameNotInTailnet
	default:
		return nil, fmt.Errorf("%w (DNS %s)", ErrNameNotInTailnet, dns.RcodeToString[msg.Rcode])
	}
	var out []netip.Addr
	for _, rr := range msg.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			if ip, ok := netip.AddrFromSlice(rr.A.To4()); ok {
				out = append(out, ip)
			}
		case *dns.AAAA:
			if ip, ok := netip.AddrFromSlice(rr.AAAA); ok {
				out = append(out, ip)
			}
		}
	}
	return out, nil
}
