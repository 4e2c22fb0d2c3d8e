package fake

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Policy "tests" are assertions Tailscale evaluates when a policy is
// saved: from src, each "host:port" in accept must be reachable and each
// in deny must not. Any failure refuses the write with
// {"message": "test(s) failed", "data": [{"user": src, "errors": [...]}]}
// (format: https://tailscale.com/api, "Validate and test policy file").
//
// The fake evaluates selectors by name, not against devices: a tag, user
// or group reaches what a rule names it by (or by "*", a group it is in,
// an autogroup that fits, a CIDR that holds its address), but an IP
// address is not linked to the device, tags or owner it belongs to.

type policyTest struct {
	Src    string   `json:"src"`
	Proto  string   `json:"proto"`
	Accept []string `json:"accept"`
	Deny   []string `json:"deny"`
	// Older spellings of src and accept, still accepted by Tailscale.
	User  string   `json:"user"`
	Allow []string `json:"allow"`
}

// normalize folds the older field names into the current ones.
func (t *policyTest) normalize() {
	if t.Src == "" {
		t.Src = t.User
	}
	t.Accept = append(t.Accept, t.Allow...)
	t.User, t.Allow = "", nil
}

const testsFailed = "test(s) failed" // documented and captured

// runAllTests runs "tests" and "sshTests"; their failures share one answer.
func (d *policyDoc) runAllTests() *policyError {
	var data []errorData
	for _, t := range d.Tests {
		if errs := d.runTest(t); len(errs) > 0 {
			data = append(data, errorData{User: t.Src, Errors: errs})
		}
	}
	for _, t := range d.SSHTests {
		if errs := d.runSSHTest(t); len(errs) > 0 {
			data = append(data, errorData{User: t.Src, Errors: errs})
		}
	}
	if len(data) > 0 {
		return &policyError{Message: testsFailed, Data: data}
	}
	return nil
}

// runTests runs a list of tests against d, as POST /acl/validate does
// with a JSON array body.
func (d *policyDoc) runTests(tests []policyTest) *policyError {
	var data []errorData
	for _, t := range tests {
		t.normalize()
		if errs := d.runTest(t); len(errs) > 0 {
			data = append(data, errorData{User: t.Src, Errors: errs})
		}
	}
	if len(data) > 0 {
		return &policyError{Message: testsFailed, Data: data}
	}
	return nil
}

// runTest returns one test's failures. Malformed entries fail the test
// rather than the parse, as on Tailscale (captured: policytest-malformed-*
// and policytest-*-unknown-* all answered "test(s) failed").
func (d *policyDoc) runTest(t policyTest) []string {
	if t.Src == "" {
		return []string{"src is required"}
	}
	if len(t.Accept) == 0 && len(t.Deny) == 0 {
		return []string{`a test needs "accept" or "deny" entries`}
	}
	if !d.knownPrincipal(t.Src) {
		return []string{fmt.Sprintf("src %q: unknown user, group, tag, host or IP address", t.Src)}
	}
	proto := 6 // tcp unless the test names another protocol
	if t.Proto != "" {
		p, err := parseProto(t.Proto)
		if err != nil {
			return []string{err.Error()}
		}
		proto = p
	}
	var errs []string
	check := func(addr string, want bool) {
		host, port, err := d.testAddress(addr, t.Src)
		if err != nil {
			errs = append(errs, fmt.Sprintf("address %q: %v", addr, err))
			return
		}
		if got := d.allows(t.Src, host, proto, port); got != want {
			errs = append(errs, fmt.Sprintf("address %q: want: %s, got: %s", addr, verdict(want), verdict(got)))
		}
	}
	for _, a := range t.Accept {
		check(a, true)
	}
	for _, a := range t.Deny {
		check(a, false)
	}
	return errs
}

func verdict(accept bool) string {
	if accept {
		return "Accept"
	}
	return "Drop"
}

// testAddress splits a test destination into a known host and one port.
func (d *policyDoc) testAddress(addr, src string) (string, int, error) {
	host, ps, ok := splitHostPort(addr)
	if !ok {
		return "", 0, fmt.Errorf("needs a port, like %s:443", addr)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", ps)
	}
	switch {
	case host == "autogroup:self":
		if !isUser(src) {
			return "", 0, fmt.Errorf("autogroup:self needs a user as src")
		}
		return src, int(port), nil
	case host == "autogroup:internet" || d.knownPrincipal(host):
		return host, int(port), nil
	}
	return "", 0, fmt.Errorf("unknown host %q", host)
}

// knownPrincipal reports whether x names something the policy can
// select: a user, a defined tag, group or host, a user autogroup, an
// IP address or a CIDR.
func (d *policyDoc) knownPrincipal(x string) bool {
	switch {
	case isUser(x):
		return true
	case strings.HasPrefix(x, "tag:"):
		_, ok := d.TagOwners[x]
		return ok
	case strings.HasPrefix(x, "group:"):
		_, ok := d.Groups[x]
		return ok
	case x == "autogroup:member" || x == "autogroup:tagged":
		return true
	}
	_, err := d.hostPrefix(x)
	return err == nil
}

// allows reports whether src may reach host:port over proto through the
// grants' "ip" and the acls.
func (d *policyDoc) allows(src, host string, proto, port int) bool {
	for _, g := range d.Grants {
		if !d.srcMatches(g.Src, src) || !d.dstMatches(g.Dst, host, src) {
			continue
		}
		for _, p := range g.IP {
			if e, err := parseIPEntry(p); err == nil && e.covers(proto, port) {
				return true
			}
		}
	}
	for _, a := range d.ACLs {
		if a.Action != "accept" || !d.srcMatches(a.Src, src) {
			continue
		}
		if a.Proto != "" {
			if p, err := parseProto(a.Proto); err != nil || p != proto {
				continue
			}
		}
		for _, e := range a.Dst {
			h, ports, ok := splitHostPort(e)
			if !ok || !d.dstMatches([]string{h}, host, src) {
				continue
			}
			rs, err := parsePorts(ports)
			if err == nil && (ipEntry{proto: anyProto, ranges: rs}).covers(proto, port) {
				return true
			}
		}
	}
	return false
}

// srcMatches reports whether the source x is covered by a selector. A
// group as x stands for each of its members: it matches only if every
// member does (an empty group matches nothing).
func (d *policyDoc) srcMatches(selectors []string, x string) bool {
	if members, ok := d.Groups[x]; ok && !slices.Contains(selectors, x) && !slices.Contains(selectors, "*") {
		if len(members) == 0 {
			return false
		}
		for _, m := range members {
			if !d.srcMatches(selectors, m) {
				return false
			}
		}
		return true
	}
	for _, s := range selectors {
		if d.principalMatches(s, x) {
			return true
		}
	}
	return false
}

// dstMatches is srcMatches for destinations, where autogroup:self means
// the source user's own devices and autogroup:internet public addresses.
func (d *policyDoc) dstMatches(selectors []string, host, src string) bool {
	for _, s := range selectors {
		switch {
		case s == "autogroup:self":
			if isUser(src) && host == src {
				return true
			}
		case s == "autogroup:internet":
			if host == s || d.isPublicAddress(host) {
				return true
			}
		case d.principalMatches(s, host):
			return true
		}
	}
	return false
}

// principalMatches reports whether selector s covers x (a user, tag,
// host, address or a name used verbatim).
func (d *policyDoc) principalMatches(s, x string) bool {
	switch {
	case s == "*" || s == x:
		return true
	case strings.HasPrefix(s, "group:"):
		return slices.Contains(d.Groups[s], x)
	case s == "autogroup:member":
		return isUser(x)
	case s == "autogroup:tagged":
		return strings.HasPrefix(x, "tag:")
	}
	if domain, ok := userWildcardDomain(s); ok {
		return isUser(x) && strings.EqualFold(x[strings.LastIndex(x, "@")+1:], domain)
	}
	sp, err1 := d.hostPrefix(s)
	xp, err2 := d.hostPrefix(x)
	return err1 == nil && err2 == nil && sp.Bits() <= xp.Bits() && sp.Masked().Contains(xp.Addr())
}

// isPublicAddress reports whether host is an address on the internet:
// not private, shared (CGNAT, which holds Tailscale's 100.x), loopback or
// link-local.
func (d *policyDoc) isPublicAddress(host string) bool {
	p, err := d.hostPrefix(host)
	if err != nil {
		return false
	}
	a := p.Addr()
	cgnat := netip.MustParsePrefix("100.64.0.0/10")
	ula := netip.MustParsePrefix("fc00::/7")
	return a.IsGlobalUnicast() && !a.IsPrivate() && !cgnat.Contains(a) && !ula.Contains(a)
}
