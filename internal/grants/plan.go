package grants

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/target"
)

// TailnetView is what planning needs to know about a tailnet. It is a plain
// struct so this package stays free of Tailscale code; the caller fills it
// from the API (GET /tailnet/-/devices?fields=all) or a test.
type TailnetView struct {
	// MagicDNSSuffix is the tailnet's MagicDNS domain, e.g.
	// "tail1234.ts.net" (leading/trailing dots are ignored). Names under it
	// are device names. Empty means unknown: only single-label names are
	// then treated as device names.
	MagicDNSSuffix string
	Devices        []Device
}

// Device is one node of the tailnet.
type Device struct {
	ID string
	// Name is the MagicDNS FQDN, e.g. "staging-box.tail1234.ts.net" (a
	// trailing dot is ignored).
	Name string
	// Hostname is the machine's own host name, which may differ from the
	// first label of Name when names collide.
	Hostname  string
	Addresses []netip.Addr
	Tags      []string
	// EnabledRoutes are the subnet routes the admin approved; only these
	// carry traffic. AdvertisedRoutes are the ones the device offers.
	EnabledRoutes    []netip.Prefix
	AdvertisedRoutes []netip.Prefix
}

// Plan is what connecting an environment will grant: the tag its runners
// carry, the grants for the policy file, and what a person should know.
type Plan struct {
	// Env is the environment name the plan is for.
	Env string
	// Tag is "tag:tailgate-<env>", the only source of every grant.
	Tag string
	// TagOwners own Tag in the policy's "tagOwners"; NewPlan sets
	// DefaultTagOwners. headscale has no autogroup:admin (its tag owners
	// are users "name@", groups or tags), so a caller writing a headscale
	// policy sets its own here.
	TagOwners []string
	// Grants are the policy grants, one per port, sorted by port.
	Grants []Grant
	// CIDRs is every destination granted, sorted and without duplicates
	// (single hosts as /32 or /128). Show it to the admin.
	CIDRs []netip.Prefix
	// Warnings are sentences about targets that may not work or are
	// granted more broadly than asked, in target order, without duplicates.
	Warnings []string
	// Targets is each target with what it was granted, in input order.
	Targets []PlannedTarget
}

// Grant is one entry of the policy's "grants" section.
type Grant struct {
	Src []string `json:"src"`
	Dst []string `json:"dst"`
	IP  []string `json:"ip"`
}

// PlannedTarget is one target and what it was granted.
type PlannedTarget struct {
	// target.Target is the target as parsed, except that target.Kind is final: a dotted
	// name under the MagicDNS suffix is target.KindDeviceName here.
	target.Target
	// DeviceID is the device a device-name target resolved to.
	DeviceID string
	Dst      []netip.Prefix
	// Warning is empty when the target is granted exactly and should work.
	Warning string
}

var envNameRE = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)

// ValidEnvName reports whether name can name an environment: 1–40
// lower-case letters, digits and hyphens. The name becomes part of the tag
// "tag:tailgate-<env>" and of the policy comments that mark our entries, so
// it must stay within what tags and comments can carry.
func ValidEnvName(name string) bool {
	return envNameRE.MatchString(name)
}

// DefaultTagOwners owns our tags on Tailscale: the tailnet's admins, who
// already control the policy file.
var DefaultTagOwners = []string{"autogroup:admin"}

// TagFor returns the tag an environment's runners carry.
func TagFor(env string) string { return "tag:tailgate-" + env }

// EnvError reports an invalid environment name.
type EnvError struct{ Env string }

func (e *EnvError) Error() string {
	return fmt.Sprintf("environment name %q is invalid: use 1-40 lower-case letters, digits and hyphens", shorten(e.Env))
}

// NewPlan maps targets onto the tailnet. (It is not called Plan because Go
// cannot have a function and a type of one name.) Rules (design.md):
//   - Tailscale IP: that address; warns if no device has it.
//   - device name or MagicDNS FQDN: that device's addresses; an unknown or
//     ambiguous name is an error.
//   - private IP: that address as /32 (/128); warns if no approved subnet
//     route covers it, naming the device if a route is only advertised.
//   - DNS name: every approved subnet route (exit-node default routes
//     excluded), with a warning listing them; an error if there are none.
//
// Every grant's source is the environment's tag and its ip is "tcp:<port>".
// A target the tailnet cannot serve (unknown device, a DNS name with no
// approved route) is a *target.Error naming it; a bad env is an *EnvError.
func NewPlan(env string, targets []target.Target, tn TailnetView) (Plan, error) {
	if !ValidEnvName(env) {
		return Plan{}, &EnvError{Env: env}
	}
	if len(targets) == 0 {
		return Plan{}, &target.Error{Problem: "no targets given; name at least one host:port"}
	}
	if len(targets) > target.MaxPerEnvironment {
		return Plan{}, &target.Error{Problem: fmt.Sprintf("%d targets given; an environment may have at most %d", len(targets), target.MaxPerEnvironment)}
	}
	suffix := strings.ToLower(strings.Trim(tn.MagicDNSSuffix, "."))

	p := Plan{Env: env, Tag: TagFor(env), TagOwners: slices.Clone(DefaultTagOwners)}
	byPort := map[uint16][]netip.Prefix{}
	for _, t := range targets {
		pt, err := planTarget(t, tn, suffix)
		if err != nil {
			return Plan{}, err
		}
		for _, d := range pt.Dst {
			if d.Bits() == 0 {
				// A default route would be "everything": never grant it.
				return Plan{}, target.NewError(t.String(), "would be granted %s, which is every address; refusing", d)
			}
		}
		byPort[t.Port] = append(byPort[t.Port], pt.Dst...)
		p.CIDRs = append(p.CIDRs, pt.Dst...)
		if pt.Warning != "" && !slices.Contains(p.Warnings, pt.Warning) {
			p.Warnings = append(p.Warnings, pt.Warning)
		}
		p.Targets = append(p.Targets, pt)
	}
	p.CIDRs = sortPrefixes(p.CIDRs)

	ports := make([]uint16, 0, len(byPort))
	for port := range byPort {
		ports = append(ports, port)
	}
	slices.Sort(ports)
	for _, port := range ports {
		dsts := sortPrefixes(byPort[port])
		g := Grant{Src: []string{p.Tag}, IP: []string{"tcp:" + strconv.Itoa(int(port))}}
		for _, d := range dsts {
			g.Dst = append(g.Dst, dstString(d))
		}
		p.Grants = append(p.Grants, g)
	}
	return p, nil
}

func planTarget(t target.Target, tn TailnetView, suffix string) (PlannedTarget, error) {
	pt := PlannedTarget{Target: t}
	if t.Kind == target.KindDNSName && (suffix != "" && strings.HasSuffix(t.Host, "."+suffix) ||
		suffix == "" && strings.HasSuffix(t.Host, ".ts.net")) {
		// Under the MagicDNS suffix (or, if the suffix is unknown, any
		// ts.net name): a device, matched by its full name.
		pt.Kind = target.KindDeviceName
	}
	switch pt.Kind {
	case target.KindTailscaleIP:
		pt.Dst = []netip.Prefix{hostPrefix(t.Addr)}
		if findDeviceByAddr(tn, t.Addr) == nil {
			pt.Warning = fmt.Sprintf("%s: no device in the tailnet has the address %s right now; the grant is written, but verification will fail until one does", t, t.Addr)
		}
	case target.KindDeviceName:
		d, err := findDeviceByName(tn, t, suffix)
		if err != nil {
			return pt, err
		}
		pt.DeviceID = d.ID
		for _, a := range d.Addresses {
			if a.IsValid() {
				pt.Dst = append(pt.Dst, hostPrefix(a.Unmap()))
			}
		}
		if len(pt.Dst) == 0 {
			return pt, target.NewError(t.String(), "device %s has no Tailscale addresses yet; wait until it has joined the tailnet", displayName(d))
		}
		pt.Dst = sortPrefixes(pt.Dst)
	case target.KindPrivateIP:
		pt.Dst = []netip.Prefix{hostPrefix(t.Addr)}
		if dev, _ := routeCovering(tn, t.Addr, true); dev == nil {
			if adv, route := routeCovering(tn, t.Addr, false); adv != nil {
				pt.Warning = fmt.Sprintf("%s: the subnet route %s is advertised by %s but not approved; approve it in the admin console (Machines → %s → Edit route settings), or the target stays unreachable", t, route, displayName(adv), displayName(adv))
			} else {
				pt.Warning = fmt.Sprintf("%s: no approved subnet route covers %s; advertise and approve a route to it from a subnet router, or the target stays unreachable", t, t.Addr)
			}
		}
	case target.KindDNSName:
		if strings.HasSuffix(t.Host, ".ts.net") {
			return pt, target.NewError(t.String(), "is a MagicDNS name of another tailnet (this tailnet's names end in %q)", suffix)
		}
		routes := approvedRoutes(tn)
		if len(routes) == 0 {
			return pt, target.NewError(t.String(), "is a DNS name, and a policy can only grant it through approved subnet routes, but this tailnet has none; give the host's IP or device name instead, or approve a subnet route to it")
		}
		pt.Dst = routes
		strs := make([]string, len(routes))
		for i, r := range routes {
			strs[i] = r.String()
		}
		pt.Warning = fmt.Sprintf("%s: a Tailscale policy cannot name a DNS host, so tailgate grants every approved subnet route (%s), which is broader than this hostname; give an IP or device name for the narrowest grant", t, strings.Join(strs, ", "))
	default:
		return pt, target.NewError(t.String(), "has no kind; parse it with target.Parse")
	}
	return pt, nil
}

func findDeviceByAddr(tn TailnetView, a netip.Addr) *Device {
	a = a.Unmap()
	for i := range tn.Devices {
		for _, da := range tn.Devices[i].Addresses {
			if da.Unmap() == a {
				return &tn.Devices[i]
			}
		}
	}
	return nil
}

// findDeviceByName resolves a device-name target: a full MagicDNS name must
// match a device's Name exactly; a single label matches the first label of
// a device's Name, or failing that its Hostname. More than one match is an
// error, since granting the wrong machine is worse than asking.
func findDeviceByName(tn TailnetView, t target.Target, suffix string) (*Device, error) {
	norm := func(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }
	var matches []*Device
	collect := func(match func(d *Device) bool) {
		for i := range tn.Devices {
			if match(&tn.Devices[i]) {
				matches = append(matches, &tn.Devices[i])
			}
		}
	}
	if strings.Contains(t.Host, ".") {
		collect(func(d *Device) bool { return norm(d.Name) == t.Host })
	} else {
		collect(func(d *Device) bool {
			first, _, _ := strings.Cut(norm(d.Name), ".")
			return first == t.Host
		})
		if len(matches) == 0 {
			collect(func(d *Device) bool { return strings.ToLower(d.Hostname) == t.Host })
		}
	}
	switch len(matches) {
	case 0:
		if strings.Contains(t.Host, ".") {
			return nil, target.NewError(t.String(), "no device named %q in the tailnet; check the name in the admin console's Machines page", t.Host)
		}
		looked := ""
		if suffix != "" {
			looked = fmt.Sprintf(" (looked for %s.%s)", t.Host, suffix)
		}
		return nil, target.NewError(t.String(), "no device named %q in the tailnet%s; check the name in the admin console's Machines page, or if it is an internal DNS name, give it in full (e.g. %s.corp.example.com)", t.Host, looked, t.Host)
	case 1:
		return matches[0], nil
	}
	names := make([]string, len(matches))
	for i, d := range matches {
		names[i] = displayName(d)
	}
	return nil, target.NewError(t.String(), "matches %d devices (%s); give the full MagicDNS name", len(matches), strings.Join(names, ", "))
}

// routeCovering finds a device with a subnet route containing a; approved
// routes if approved is true, otherwise advertised ones. Default routes
// (exit nodes) do not count: they are not subnet routes.
func routeCovering(tn TailnetView, a netip.Addr, approved bool) (*Device, netip.Prefix) {
	for i := range tn.Devices {
		d := &tn.Devices[i]
		routes := d.AdvertisedRoutes
		if approved {
			routes = d.EnabledRoutes
		}
		for _, r := range routes {
			if r.Bits() > 0 && r.Contains(a) {
				return d, r
			}
		}
	}
	return nil, netip.Prefix{}
}

// approvedRoutes is every approved subnet route in the tailnet, without
// exit-node default routes, sorted and deduplicated.
func approvedRoutes(tn TailnetView) []netip.Prefix {
	var out []netip.Prefix
	for _, d := range tn.Devices {
		for _, r := range d.EnabledRoutes {
			if r.IsValid() && r.Bits() > 0 {
				out = append(out, r.Masked())
			}
		}
	}
	return sortPrefixes(out)
}

func displayName(d *Device) string {
	if d.Name != "" {
		return strings.TrimSuffix(d.Name, ".")
	}
	if d.Hostname != "" {
		return d.Hostname
	}
	return "device " + d.ID
}

func hostPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}

// dstString renders a single host as a bare address (as people write it in
// policies) and a range as a CIDR.
func dstString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// shorten cuts s for echoing in an error.
func shorten(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}
