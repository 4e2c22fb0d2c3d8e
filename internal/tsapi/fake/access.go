package fake

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
)

// Access rules: the stored policy's grants and acls with every selector
// resolved to addresses of the tailnet's devices, for a control server
// that enforces the policy (the sandbox). The API itself never needs this;
// it lives here because the policy's parser and selectors do.
//
// Resolution fails closed: a selector the fake cannot tie to devices or
// addresses (a tag missing from tagOwners, autogroup:internet, a role
// autogroup, an ipset) selects nothing, and a grant with "via" grants
// nothing, as the sandbox does not model routing through chosen routers.

// AnyProto in a PortRange means every protocol.
const AnyProto = anyProto

// AccessRule lets packets from Src to Dst on Ports through, and gives Src
// the app capabilities Caps at Dst. Src and Dst are never empty; a rule
// has Ports, Caps or both.
type AccessRule struct {
	Src   []netip.Prefix
	Dst   []netip.Prefix
	Ports []PortRange
	// Caps are a grant's "app" capabilities: name → the JSON values listed
	// for it.
	Caps map[string][]json.RawMessage
}

// PortRange is an inclusive range of ports of one protocol (an IANA
// number, or AnyProto).
type PortRange struct {
	Proto       int
	First, Last uint16
}

// allAddresses is what "*" selects: every address, every route.
var allAddresses = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// AccessRules resolves the policy's grants and acls against devices. A
// policy that does not parse or validate yields an error and no rules:
// Tailscale never applies a policy it would refuse to save, so a control
// server enforcing one must grant nothing rather than guess.
func AccessRules(policy []byte, devices []Device) ([]AccessRule, error) {
	d, perr := parsePolicy(policy)
	if perr != nil {
		return nil, perr
	}
	var out []AccessRule
	add := func(r AccessRule) {
		if len(r.Src) > 0 && len(r.Dst) > 0 && (len(r.Ports) > 0 || len(r.Caps) > 0) {
			out = append(out, r)
		}
	}
	for _, g := range d.Grants {
		if len(g.Via) > 0 {
			continue
		}
		var ports []PortRange
		for _, e := range g.IP {
			if pe, err := parseIPEntry(e); err == nil {
				ports = append(ports, pe.portRanges()...)
			}
		}
		caps := map[string][]json.RawMessage{}
		for name, raw := range g.App {
			var vals []json.RawMessage
			if json.Unmarshal(raw, &vals) == nil && len(vals) > 0 {
				caps[name] = vals
			}
		}
		for _, r := range d.resolveRule(g.Src, g.Dst, devices) {
			r.Ports, r.Caps = ports, caps
			add(r)
		}
	}
	for _, a := range d.ACLs {
		if a.Action != "accept" {
			continue
		}
		proto := anyProto
		if a.Proto != "" {
			p, err := parseProto(a.Proto)
			if err != nil {
				continue
			}
			proto = p
		}
		for _, e := range a.Dst {
			host, ps, ok := splitHostPort(e)
			if !ok {
				continue
			}
			ranges, err := parsePorts(ps)
			if err != nil {
				continue
			}
			ports := ipEntry{proto: proto, ranges: ranges}.portRanges()
			for _, r := range d.resolveRule(a.Src, []string{host}, devices) {
				r.Ports = ports
				add(r)
			}
		}
	}
	return out, nil
}

func (e ipEntry) portRanges() []PortRange {
	out := make([]PortRange, 0, len(e.ranges))
	for _, r := range e.ranges {
		out = append(out, PortRange{Proto: e.proto, First: uint16(r.lo), Last: uint16(r.hi)})
	}
	return out
}

// resolveRule turns a rule's sources and destinations into address rules
// without ports. autogroup:self becomes one rule per user the sources
// select: that user's devices to that user's devices.
func (d *policyDoc) resolveRule(srcs, dsts []string, devices []Device) []AccessRule {
	var src, dst []netip.Prefix
	for _, s := range srcs {
		src = append(src, d.selectAddresses(s, devices)...)
	}
	self := false
	for _, s := range dsts {
		if s == "autogroup:self" {
			self = true
			continue
		}
		dst = append(dst, d.selectAddresses(s, devices)...)
	}
	out := []AccessRule{{Src: src, Dst: dst}}
	if self {
		var users []string
		for _, dev := range devices {
			if len(dev.Tags) == 0 && !slices.Contains(users, dev.User) && d.srcMatches(srcs, dev.User) {
				users = append(users, dev.User)
			}
		}
		for _, u := range users {
			own := d.selectAddresses(u, devices)
			out = append(out, AccessRule{Src: own, Dst: own})
		}
	}
	return out
}

// selectAddresses is what selector s stands for on this tailnet: device
// addresses, or an address range of its own.
func (d *policyDoc) selectAddresses(s string, devices []Device) []netip.Prefix {
	switch {
	case s == "*" || s == "autogroup:danger-all":
		return allAddresses
	case strings.HasPrefix(s, "tag:"):
		if _, ok := d.TagOwners[s]; !ok {
			return nil
		}
		return deviceAddresses(devices, func(dev Device) bool { return slices.Contains(dev.Tags, s) })
	case s == "autogroup:tagged":
		return deviceAddresses(devices, func(dev Device) bool { return len(dev.Tags) > 0 })
	case s == "autogroup:member" || strings.HasPrefix(s, "group:") || isUser(s):
		return deviceAddresses(devices, func(dev Device) bool { return len(dev.Tags) == 0 && d.principalMatches(s, dev.User) })
	}
	if domain, ok := userWildcardDomain(s); ok {
		return deviceAddresses(devices, func(dev Device) bool {
			return len(dev.Tags) == 0 && isUser(dev.User) && strings.EqualFold(dev.User[strings.LastIndex(dev.User, "@")+1:], domain)
		})
	}
	// What is left: hosts aliases, IP addresses and CIDRs. Autogroups,
	// ipsets and services the cases above do not model fail here.
	p, err := d.hostPrefix(s)
	if err != nil {
		return nil
	}
	return []netip.Prefix{p.Masked()}
}

func deviceAddresses(devices []Device, match func(Device) bool) []netip.Prefix {
	var out []netip.Prefix
	for _, dev := range devices {
		if !match(dev) {
			continue
		}
		for _, a := range dev.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
			}
		}
	}
	return out
}
