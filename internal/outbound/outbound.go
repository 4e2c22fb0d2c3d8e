// Package outbound makes the HTTP calls tailgate makes on a tenant's
// behalf, to addresses a tenant chose: a self-hosted control server's URL
// today; OIDC discovery, JWKS and webhooks later.
//
// # Overview
//
// A URL an org admin types must not turn the server into a proxy for the
// server's own network (SSRF): the cloud metadata service, an admin port
// on loopback, a database on the private network. A [Policy] decides which
// IP addresses such a call may reach, and [Policy.Client] returns an
// http.Client that enforces it:
//
//   - The address is checked when the socket is dialled (net.Dialer's
//     Control hook), after DNS resolution, so a name that resolves to a
//     public address when checked and to 169.254.169.254 when dialled
//     (DNS rebinding) is still refused. A refused address is never
//     connected to.
//   - Link-local addresses (169.254.0.0/16, fe80::/10) and the cloud
//     metadata addresses ([AlwaysRefused]) are refused whatever the policy
//     says: nothing legitimate a tenant names lives there.
//   - Loopback, private, shared (CGNAT) and other non-public ranges
//     ([NonPublic]) are refused unless the operator allows them
//     (Policy.Allow), e.g. for a headscale on the same host or LAN. Tests,
//     the sandbox and the demo allow loopback explicitly.
//   - The operator may also refuse more (Policy.Deny). Between the
//     operator's own ranges the most specific one decides, and Deny wins a
//     tie, so "deny 0.0.0.0/0, allow 203.0.113.0/24" is an allowlist.
//   - Redirects are never followed: the caller gets the 3xx answer and
//     says in its own words that the server redirected. Following one
//     could reach another host, and Go's client would resend credentials
//     to the same host.
//   - No proxy from the environment (HTTPS_PROXY) is used: the policy
//     checks the address actually dialled, which a proxy would hide.
//
// Callers must also never repeat an upstream body verbatim in an error or
// a log: the body is whatever the address answered, possibly a secret.
//
// # Usage
//
//	p := outbound.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
//	hc := p.Client(30 * time.Second)
//	resp, err := hc.Get(tenantURL) // an *outbound.RefusedError if the address is not allowed
package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// AlwaysRefused are the ranges no policy can allow: link-local (where the
// cloud metadata services live) and the metadata addresses outside it.
var AlwaysRefused = []Range{
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata lives at 169.254.169.254)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "the AWS metadata service"},
	{netip.MustParsePrefix("fd20:ce::254/128"), "the Google Cloud metadata service"},
	{netip.MustParsePrefix("100.100.100.200/32"), "the Alibaba Cloud metadata service"},
	{netip.MustParsePrefix("192.0.0.192/32"), "the Oracle Cloud metadata service"},
	{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified address"},
	{netip.MustParsePrefix("::/128"), "an unspecified address"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
}

// NonPublic are the ranges refused unless the operator allows them.
var NonPublic = []Range{
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("fc00::/7"), "private (unique local)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT, Tailscale)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
}

// Range is a prefix and why it is refused, in words for an error.
type Range struct {
	Prefix netip.Prefix
	Why    string
}

// Policy decides which addresses an outbound call may reach. The zero
// value refuses AlwaysRefused and NonPublic, and allows public addresses.
// A Policy is not changed after use.
type Policy struct {
	// Allow are ranges the operator permits although they are NonPublic,
	// e.g. 127.0.0.0/8 for a headscale on the same host. AlwaysRefused
	// ranges stay refused.
	Allow []netip.Prefix
	// Deny are more ranges the operator refuses. Where Allow and Deny
	// overlap, the longer prefix decides; Deny wins a tie.
	Deny []netip.Prefix
}

// AllowLoopback is the policy of tests, the sandbox and the demo: loopback
// is allowed, everything else as by default.
func AllowLoopback() *Policy {
	return &Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
}

// RefusedError is a call the policy refused. Its text names the address
// and why, never anything the address answered.
type RefusedError struct {
	Addr netip.Addr
	Why  string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s is %s: tailgate does not call it on a tenant's behalf", e.Addr, e.Why)
}

// Check returns a *RefusedError if the policy refuses ip.
func (p *Policy) Check(ip netip.Addr) error {
	for _, a := range candidates(ip) {
		if err := p.check(a, ip); err != nil {
			return err
		}
	}
	return nil
}

// candidates are the addresses ip stands for: itself (unmapped), and the
// IPv4 address a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address embeds,
// so 64:ff9b::a9fe:a9fe is judged as 169.254.169.254 too.
func candidates(ip netip.Addr) []netip.Addr {
	ip = ip.Unmap().WithZone("")
	out := []netip.Addr{ip}
	if !ip.Is6() {
		return out
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		out = append(out, netip.AddrFrom4([4]byte(b[12:16])))
	case sixToFour.Contains(ip):
		out = append(out, netip.AddrFrom4([4]byte(b[2:6])))
	}
	return out
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

func (p *Policy) check(a, orig netip.Addr) error {
	refuse := func(why string) error { return &RefusedError{Addr: orig, Why: why} }
	if !a.IsValid() {
		return refuse("not an IP address")
	}
	for _, r := range AlwaysRefused {
		if r.Prefix.Contains(a) {
			return refuse(r.Why)
		}
	}
	// The operator's ranges: the most specific decides, Deny on a tie.
	best, allowed := -1, false
	for _, pf := range p.Allow {
		if pf.Contains(a) && pf.Bits() > best {
			best, allowed = pf.Bits(), true
		}
	}
	for _, pf := range p.Deny {
		if pf.Contains(a) && pf.Bits() >= best {
			best, allowed = pf.Bits(), false
		}
	}
	if best >= 0 {
		if !allowed {
			return refuse("in a range the operator refuses (--outbound-deny)")
		}
		return nil
	}
	for _, r := range NonPublic {
		if r.Prefix.Contains(a) {
			return refuse(r.Why + "; the operator can allow it with --outbound-allow " + r.Prefix.String())
		}
	}
	return nil
}

// control is net.Dialer's Control hook: it sees the resolved address
// just before the socket connects.
func (p *Policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Why: "not an IP address and port"}
	}
	return p.Check(ap.Addr())
}

// Dialer returns a net.Dialer that refuses, before connecting, any address
// the policy refuses.
func (p *Policy) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: p.control}
}

// ErrRedirect is returned (wrapped) by CheckRedirect; callers normally see
// the 3xx answer instead (see Client).
var ErrRedirect = errors.New("the server answered with a redirect, which tailgate does not follow")

// Client returns an http.Client whose every connection obeys the policy.
// It never follows a redirect: the 3xx answer is returned as is, with its
// body unread, for the caller to report (see IsRedirect). timeout bounds
// each whole call; zero means 30 seconds.
func (p *Policy) Client(timeout time.Duration) *http.Client {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	d := p.Dialer()
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would hide the address the policy must check
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           10,
		IdleConnTimeout:        60 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// IsRedirect reports whether an answer's status is a redirect, which a
// Client hands back instead of following.
func IsRedirect(status int) bool {
	return status >= 300 && status < 400 && status != http.StatusNotModified
}

// CheckURL resolves u's host and checks every address it has now, for a
// URL tailgate hands to code that dials with its own dialer (tsnet's
// control client). It narrows, but cannot close, the DNS rebinding window
// that Client closes; use Client wherever tailgate dials itself.
func (p *Policy) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return errors.New("not a URL with a host")
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		return p.Check(ip)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: no address", host)
	}
	for _, a := range addrs {
		if err := p.Check(a); err != nil {
			return err
		}
	}
	return nil
}

// ParsePrefixes parses a comma-separated list of CIDRs or addresses (an
// address is its own /32 or /128), as --outbound-allow and --outbound-deny
// take them.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if pf, err := netip.ParsePrefix(f); err == nil {
			out = append(out, pf.Masked())
			continue
		}
		ip, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or an IP address", f)
		}
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}
