package gateway

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
	"github.com/tailgate-dev/tailgate/internal/gateway/pathnorm"
)

// bindOptions compiles a bind's tailgate extensions: which peers' forwarding
// headers are believed (trustedProxies) and how long a request body may
// take (bodyReadTimeout).
func (c *compiler) bindOptions(b config.Bind, bt *bindTable, path string) {
	bt.bodyTimeout = defaultBodyReadTimeout
	if b.BodyReadTimeout.Raw != "" {
		bt.bodyTimeout = b.BodyReadTimeout.D // parsed and checked by config
	}
	for i, s := range b.TrustedProxies {
		p, err := parseTrusted(s)
		if err != nil {
			c.Fail(b.Pos, fmt.Sprintf("%s.trustedProxies[%d]", path, i), err)
			continue
		}
		bt.trusted = append(bt.trusted, p)
	}
}

// parseTrusted reads an address or a CIDR; an IPv4-mapped IPv6 prefix is
// unmapped, as peer addresses are.
func parseTrusted(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("want an IP address or CIDR, got %q", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("want an IP address or CIDR, got %q", s)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// pathOptions is a route's opt-out from pathnorm's refusals.
func pathOptions(r config.Route) pathnorm.Options {
	if r.PathNormalization == nil {
		return pathnorm.Options{}
	}
	return pathnorm.Options{
		AllowEncodedSlashes: r.PathNormalization.AllowEncodedSlashes,
		AllowSemicolons:     r.PathNormalization.AllowSemicolons,
	}
}
