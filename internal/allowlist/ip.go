package allowlist

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/outbound"
)

// documentation are the ranges RFC 5737 and RFC 3849 reserve for
// examples. They are not routable, yet accepted as egress addresses so
// examples and tests can use them; every other range outbound refuses
// (loopback, private, link-local, CGNAT and Tailscale, metadata,
// multicast, reserved) is refused.
var documentation = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// ParsePublicIP reads one public egress address, strictly: an IPv4
// address in dotted decimal or an IPv6 address, without zone, prefix
// length, spaces, or IPv4 written as IPv6 (::ffff:a.b.c.d); not in a
// range that cannot be a public source address.
func ParsePublicIP(s string) (netip.Addr, error) {
	shown := s
	if len(shown) > 64 {
		shown = shown[:64] + "..."
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, badInput("%q is not an IP address (write one address, e.g. 203.0.113.7 or 2001:db8::7)", shown)
	}
	if ip.Zone() != "" {
		return netip.Addr{}, badInput("%q has a zone; a public egress address has none", shown)
	}
	if ip.Is4In6() {
		return netip.Addr{}, badInput("%q is an IPv4 address written as IPv6; write it as %s", shown, ip.Unmap())
	}
	for _, d := range documentation {
		if d.Contains(ip) {
			return ip, nil
		}
	}
	for _, ranges := range [][]outbound.Range{outbound.AlwaysRefused, outbound.NonPublic} {
		for _, r := range ranges {
			if r.Prefix.Contains(ip) {
				return netip.Addr{}, badInput("%s is %s (%s), not a public egress address", ip, r.Why, r.Prefix)
			}
		}
	}
	return ip, nil
}

// ParseIPList reads a list of public egress addresses separated by
// commas, spaces or newlines, as --egress-ips takes them. Duplicates are
// refused (one is likely a typo of another address).
func ParseIPList(s string) ([]netip.Addr, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
	return parseAll(fields)
}

// ReadIPFile reads public egress addresses from a file, one per line;
// blank lines and lines starting with # are skipped, as is anything after
// a # on a line.
func ReadIPFile(path string) ([]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var fields []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		if strings.ContainsAny(text, " \t,") {
			return nil, badInput("%s:%d: one address per line", path, line)
		}
		fields = append(fields, text)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ips, err := parseAll(fields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ips, nil
}

func parseAll(fields []string) ([]netip.Addr, error) {
	out := []netip.Addr{}
	seen := map[netip.Addr]bool{}
	for _, f := range fields {
		ip, err := ParsePublicIP(f)
		if err != nil {
			return nil, err
		}
		if seen[ip] {
			return nil, badInput("%s is listed twice", ip)
		}
		seen[ip] = true
		out = append(out, ip)
	}
	if len(out) > MaxIPs {
		return nil, badInput("at most %d egress addresses, not %d", MaxIPs, len(out))
	}
	return out, nil
}
