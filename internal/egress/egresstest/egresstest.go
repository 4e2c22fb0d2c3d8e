// Package egresstest is an in-process stand-in for a run's tailnet node, for
// tests of the egress proxy and of what drives it (browser flows, runs).
//
// A [Tailnet] answers names from a table (like MagicDNS / split DNS) and
// "dials" tailnet addresses such as 100.64.0.5:80 or 192.0.2.10:443 by
// connecting to a loopback server registered for that address. Addresses
// without a route are refused with [egress.ErrNotViaTailnet], the way the
// real fail-closed dialer refuses anything that would use the host network.
// Every lookup and dial is counted, so a test can prove the proxy resolved
// and dialled only through it.
package egresstest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/egress"
)

// Tailnet is a fake tailnet Resolver and Dialer. The zero value is not
// usable; call New.
type Tailnet struct {
	mu         sync.Mutex
	names      map[string][]netip.Addr
	lookupErrs map[string]error
	routes     map[netip.AddrPort]string
	lookups    []string
	dials      []netip.AddrPort
}

var (
	_ egress.Resolver = (*Tailnet)(nil)
	_ egress.Dialer   = (*Tailnet)(nil)
)

// New returns an empty fake tailnet.
func New() *Tailnet {
	return &Tailnet{
		names:      map[string][]netip.Addr{},
		lookupErrs: map[string]error{},
		routes:     map[netip.AddrPort]string{},
	}
}

func canon(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// AddName makes name resolve to addrs in the tailnet.
func (t *Tailnet) AddName(name string, addrs ...netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.names[canon(name)] = addrs
}

// FailLookup makes resolving name fail with err.
func (t *Tailnet) FailLookup(name string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lookupErrs[canon(name)] = err
}

// Route makes the tailnet address ap reachable; dials to it connect to the
// loopback address loopback ("127.0.0.1:port").
func (t *Tailnet) Route(ap netip.AddrPort, loopback string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.routes[ap] = loopback
}

// LookupNetIP implements egress.Resolver.
func (t *Tailnet) LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lookups = append(t.lookups, host)
	if err := t.lookupErrs[canon(host)]; err != nil {
		return nil, err
	}
	addrs, ok := t.names[canon(host)]
	if !ok {
		return nil, fmt.Errorf("lookup %s: %w", host, egress.ErrNameNotInTailnet)
	}
	return append([]netip.Addr(nil), addrs...), nil
}

// DialContext implements egress.Dialer.
func (t *Tailnet) DialContext(ctx context.Context, network string, ap netip.AddrPort) (net.Conn, error) {
	t.mu.Lock()
	t.dials = append(t.dials, ap)
	to, ok := t.routes[ap]
	t.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("dial %s: %w", ap, egress.ErrNotViaTailnet)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

// Lookups returns every name the proxy asked the tailnet to resolve.
func (t *Tailnet) Lookups() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lookups...)
}

// Dials returns every address the proxy asked the tailnet to dial.
func (t *Tailnet) Dials() []netip.AddrPort {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]netip.AddrPort(nil), t.dials...)
}

// StartProxy starts an egress proxy with opts (typically Resolver and
// Dialer set to a [Tailnet]) on a loopback port and returns it with its
// address; it is closed when the test ends.
func StartProxy(t testing.TB, opts egress.Options) (*egress.Proxy, netip.AddrPort) {
	t.Helper()
	p, err := egress.New(opts)
	if err != nil {
		t.Fatalf("egress.New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	addr, err := p.Start()
	if err != nil {
		t.Fatalf("start the proxy: %v", err)
	}
	return p, addr
}
