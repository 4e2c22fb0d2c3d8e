package fake

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"
)

// defaultPolicy is what a new tailnet starts with, modelled on Tailscale's
// own default: allow-all, with the commented examples a customer edits.
const defaultPolicy = `// Example/default ACLs for unrestricted connections.
{
	// Declare static groups of users. Use autogroups for all users or users with a specific role.
	// "groups": {
	//   "group:example": ["alice@example.com", "bob@example.com"],
	// },

	// Define the tags which can be applied to devices and by which users.
	// "tagOwners": {
	//   "tag:example": ["autogroup:admin"],
	// },

	// Define grants that govern access for users, groups, autogroups, tags,
	// Tailscale IP addresses, and subnet ranges.
	"grants": [
		// Allow all connections.
		// Comment this section out if you want to define specific restrictions.
		{"src": ["*"], "dst": ["*"], "ip": ["*"]},
	],

	// Define users and devices that can use Tailscale SSH.
	"ssh": [
		// Allow all users to SSH into their own devices in check mode.
		{
			"action": "check",
			"src":    ["autogroup:member"],
			"dst":    ["autogroup:self"],
			"users":  ["autogroup:nonroot", "root"],
		},
	],

	// Test access rules every time they're saved.
	// "tests": [
	//   {
	//       "src": "alice@example.com",
	//       "accept": ["tag:example"],
	//       "deny": ["100.101.102.103:443"],
	//   },
	// ],
}
`

// defaultETagAlias is the If-Match value the real API accepts for a tailnet
// whose policy was never written.
const defaultETagAlias = "ts-default"

// policyETag is the quoted hash the API sends as ETag and expects back in If-Match.
func policyETag(p []byte) string {
	sum := sha256.Sum256(p)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// policyDoc is the part of a policy file the fake understands. Other
// top-level sections are accepted (if known to Tailscale) and kept verbatim.
type policyDoc struct {
	ACLs      []aclRule           `json:"acls"`
	Grants    []grantRule         `json:"grants"`
	Groups    map[string][]string `json:"groups"`
	Hosts     map[string]string   `json:"hosts"`
	TagOwners map[string][]string `json:"tagOwners"`
	Tests     []policyTest        `json:"tests"`
}

type aclRule struct {
	Action string   `json:"action"`
	Src    []string `json:"src"`
	Dst    []string `json:"dst"`
	Proto  string   `json:"proto"`
}

type grantRule struct {
	Src []string                   `json:"src"`
	Dst []string                   `json:"dst"`
	IP  []string                   `json:"ip"`
	App map[string]json.RawMessage `json:"app"`
	Via []string                   `json:"via"`
}

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

// knownSections are the top-level keys of a Tailscale policy file; like the
// real API, the fake refuses others (compared case-insensitively, as there).
var knownSections = []string{
	"acls", "grants", "groups", "hosts", "tagowners", "tests", "sshtests",
	"ssh", "nodeattrs", "autoapprovers", "derpmap", "disableipv4",
	"onecgnatroute", "randomizeclientport", "postures", "defaultsrcposture",
	"ipsets", "attrconfig", "apps", "services",
}

// policyError is a rejected policy: the message and per-entry details the
// API sends as {"message", "data":[{"user","errors"}]}.
type policyError struct {
	Message string
	Data    []errorData
}

type errorData struct {
	User   string   `json:"user,omitempty"`
	Errors []string `json:"errors"`
}

func (e *policyError) Error() string { return e.Message }

func invalid(format string, args ...any) *policyError {
	return &policyError{Message: fmt.Sprintf(format, args...)}
}

// parsePolicy turns HuJSON into the fake's view of a policy, rejecting what
// the real API rejects for the features tailgate relies on.
func parsePolicy(huj []byte) (*policyDoc, *policyError) {
	std, err := hujson.Standardize(bytes.Clone(huj))
	if err != nil {
		return nil, invalid("parsing policy: %v", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(std, &top); err != nil {
		return nil, invalid("parsing policy: the policy must be a JSON object: %v", err)
	}
	for k := range top {
		if !slices.Contains(knownSections, strings.ToLower(k)) {
			return nil, invalid("parsing policy: unknown field %q", k)
		}
	}
	var doc policyDoc
	if err := json.Unmarshal(std, &doc); err != nil {
		return nil, invalid("parsing policy: %v", err)
	}
	if perr := doc.check(); perr != nil {
		return nil, perr
	}
	return &doc, nil
}

func (d *policyDoc) check() *policyError {
	for name, owners := range d.TagOwners {
		if !strings.HasPrefix(name, "tag:") || len(name) == len("tag:") {
			return invalid("tagOwners: %q is not a tag; tags start with \"tag:\"", name)
		}
		for _, o := range owners {
			if strings.HasPrefix(o, "tag:") {
				if _, ok := d.TagOwners[o]; !ok {
					return invalid("tagOwners[%q]: owner tag %q is not defined in tagOwners", name, o)
				}
			}
		}
	}
	for name := range d.Groups {
		if !strings.HasPrefix(name, "group:") {
			return invalid("groups: %q is not a group; groups start with \"group:\"", name)
		}
	}
	for name, v := range d.Hosts {
		if _, err := parseAddrOrPrefix(v); err != nil {
			return invalid("hosts[%q]: %q is not an IP address or CIDR", name, v)
		}
	}
	for i, g := range d.Grants {
		where := fmt.Sprintf("grants[%d]", i)
		if len(g.Src) == 0 {
			return invalid("%s: src is required", where)
		}
		if len(g.Dst) == 0 {
			return invalid("%s: dst is required", where)
		}
		if len(g.IP) == 0 && len(g.App) == 0 {
			return invalid("%s: a grant needs \"ip\" or \"app\"", where)
		}
		for _, s := range g.Src {
			if err := d.checkSelector(s, false); err != nil {
				return invalid("%s.src: %v", where, err)
			}
		}
		for _, s := range g.Dst {
			if err := d.checkSelector(s, true); err != nil {
				return invalid("%s.dst: %v", where, err)
			}
		}
		for _, v := range g.Via {
			if !strings.HasPrefix(v, "tag:") {
				return invalid("%s.via: %q is not a tag", where, v)
			}
			if err := d.checkSelector(v, false); err != nil {
				return invalid("%s.via: %v", where, err)
			}
		}
		for _, p := range g.IP {
			if _, _, _, err := parseIPProto(p); err != nil {
				return invalid("%s.ip: %v", where, err)
			}
		}
	}
	for i, a := range d.ACLs {
		where := fmt.Sprintf("acls[%d]", i)
		if a.Action != "accept" {
			return invalid("%s: action %q is not supported; use \"accept\"", where, a.Action)
		}
		for _, s := range a.Src {
			if err := d.checkSelector(s, false); err != nil {
				return invalid("%s.src: %v", where, err)
			}
		}
		for _, s := range a.Dst {
			host, ports, ok := splitHostPort(s)
			if !ok {
				return invalid("%s.dst: %q needs a port, like \"%s:443\" or \"%s:*\"", where, s, s, s)
			}
			if err := d.checkSelector(host, true); err != nil {
				return invalid("%s.dst: %v", where, err)
			}
			for _, pr := range strings.Split(ports, ",") {
				if _, _, err := parsePortRange(pr); err != nil {
					return invalid("%s.dst: %q: %v", where, s, err)
				}
			}
		}
	}
	for i := range d.Tests {
		d.Tests[i].normalize()
		t := d.Tests[i]
		if t.Src == "" {
			return invalid("tests[%d]: src is required", i)
		}
		for _, a := range append(slices.Clone(t.Accept), t.Deny...) {
			if _, _, ok := splitHostPort(a); !ok {
				return invalid("tests[%d]: %q needs a port", i, a)
			}
		}
	}
	return d.runTests(d.Tests)
}

// checkSelector checks one src/dst entry. dst entries may not carry ports
// (those go in "ip") and may not be the whole internet.
func (d *policyDoc) checkSelector(s string, dst bool) error {
	switch {
	case s == "":
		return fmt.Errorf("empty entry")
	case s == "*":
		return nil
	case strings.HasPrefix(s, "tag:"):
		if strings.Count(s, ":") > 1 {
			return fmt.Errorf("%q: ports are not allowed here; put them in \"ip\"", s)
		}
		if _, ok := d.TagOwners[s]; !ok {
			return fmt.Errorf("tag %q is not defined in tagOwners", s)
		}
		return nil
	case strings.HasPrefix(s, "group:"):
		if _, ok := d.Groups[s]; !ok {
			return fmt.Errorf("group %q is not defined", s)
		}
		return nil
	case strings.HasPrefix(s, "autogroup:"), strings.HasPrefix(s, "ipset:"), strings.HasPrefix(s, "svc:"):
		return nil
	case strings.Contains(s, "@") && !strings.Contains(s, ":"):
		return nil // a user
	}
	if _, ok := d.Hosts[s]; ok {
		return nil
	}
	p, err := parseAddrOrPrefix(s)
	if err != nil {
		if _, _, ok := splitHostPort(s); ok && dst {
			return fmt.Errorf("%q: ports are not allowed here; put them in \"ip\"", s)
		}
		return fmt.Errorf("%q is not a known host, tag, group, user or IP address (DNS names cannot be used)", s)
	}
	if dst && p.Bits() == 0 {
		return fmt.Errorf("%q is not allowed as a destination; use autogroup:internet", s)
	}
	return nil
}

func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// splitHostPort splits "host:ports" at the last colon; an IPv6 host must be
// bracketed or be a CIDR ("fd7a::/48:443" is how the ACL syntax writes it).
func splitHostPort(s string) (host, ports string, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]:")
		if end < 0 {
			return "", "", false
		}
		return s[1:end], s[end+2:], true
	}
	i := strings.LastIndex(s, ":")
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	host, ports = s[:i], s[i+1:]
	if _, err := netip.ParseAddr(s); err == nil {
		return "", "", false // a bare IPv6 address
	}
	return host, ports, true
}

// parseIPProto parses an "ip" entry: "*", "443", "80-443", "tcp:443",
// "udp:*", "icmp" or "tcp".
func parseIPProto(s string) (proto string, lo, hi int, err error) {
	if s == "*" {
		return "", 0, 65535, nil
	}
	ports := s
	if i := strings.Index(s, ":"); i >= 0 {
		proto, ports = s[:i], s[i+1:]
	} else if _, perr := strconv.Atoi(strings.SplitN(s, "-", 2)[0]); perr != nil {
		proto, ports = s, "*"
	}
	switch proto {
	case "", "tcp", "udp", "icmp", "sctp", "ipv6-icmp", "igmp", "gre", "esp", "ah":
	default:
		return "", 0, 0, fmt.Errorf("%q: unknown protocol %q", s, proto)
	}
	lo, hi, err = parsePortRange(ports)
	if err != nil {
		return "", 0, 0, fmt.Errorf("%q: %v", s, err)
	}
	return proto, lo, hi, nil
}

func parsePortRange(s string) (lo, hi int, err error) {
	if s == "*" {
		return 0, 65535, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err = strconv.Atoi(a)
	if err != nil || lo < 0 || lo > 65535 {
		return 0, 0, fmt.Errorf("invalid port %q", s)
	}
	hi = lo
	if isRange {
		hi, err = strconv.Atoi(b)
		if err != nil || hi < lo || hi > 65535 {
			return 0, 0, fmt.Errorf("invalid port range %q", s)
		}
	}
	return lo, hi, nil
}

// runTests evaluates policy tests against the grants and acls of d, the
// way the real API does before saving: any failure rejects the policy.
func (d *policyDoc) runTests(tests []policyTest) *policyError {
	var data []errorData
	for _, t := range tests {
		t.normalize()
		proto := t.Proto
		if proto == "" {
			proto = "tcp"
		}
		var errs []string
		for _, a := range append(slices.Clone(t.Accept), t.Deny...) {
			if _, _, ok := splitHostPort(a); !ok {
				errs = append(errs, fmt.Sprintf("%s: needs a port, like %s:443", a, a))
			}
		}
		for _, a := range t.Accept {
			if !d.allows(t.Src, a, proto) {
				errs = append(errs, fmt.Sprintf("%s: want: Accept, got: Drop", a))
			}
		}
		for _, a := range t.Deny {
			if d.allows(t.Src, a, proto) {
				errs = append(errs, fmt.Sprintf("%s: want: Drop, got: Accept", a))
			}
		}
		if len(errs) > 0 {
			data = append(data, errorData{User: t.Src, Errors: errs})
		}
	}
	if len(data) > 0 {
		return &policyError{Message: "test(s) failed", Data: data}
	}
	return nil
}

// allows reports whether src may reach dst ("host:port") over proto.
func (d *policyDoc) allows(src, dst, proto string) bool {
	host, portStr, ok := splitHostPort(dst)
	if !ok {
		return false
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return false
	}
	for _, g := range d.Grants {
		if !d.anyMatches(g.Src, src) || !d.anyMatches(g.Dst, host) {
			continue
		}
		for _, p := range g.IP {
			pp, lo, hi, err := parseIPProto(p)
			if err == nil && (pp == "" || pp == proto) && lo <= port && port <= hi {
				return true
			}
		}
	}
	for _, a := range d.ACLs {
		if a.Action != "accept" || !d.anyMatches(a.Src, src) {
			continue
		}
		if a.Proto != "" && a.Proto != proto {
			continue
		}
		for _, e := range a.Dst {
			h, ports, ok := splitHostPort(e)
			if !ok || !d.anyMatches([]string{h}, host) {
				continue
			}
			for _, pr := range strings.Split(ports, ",") {
				lo, hi, err := parsePortRange(pr)
				if err == nil && lo <= port && port <= hi {
					return true
				}
			}
		}
	}
	return false
}

// anyMatches reports whether the principal or host x is covered by one of
// the selectors: equal, "*", a group it belongs to, a CIDR or hosts alias
// containing its address, or an autogroup that fits.
func (d *policyDoc) anyMatches(selectors []string, x string) bool {
	xAddr, xIsAddr := d.resolve(x)
	for _, s := range selectors {
		switch {
		case s == "*" || s == x:
			return true
		case strings.HasPrefix(s, "group:"):
			if slices.Contains(d.Groups[s], x) {
				return true
			}
		case s == "autogroup:member":
			if strings.Contains(x, "@") {
				return true
			}
		case s == "autogroup:tagged":
			if strings.HasPrefix(x, "tag:") {
				return true
			}
		default:
			if p, ok := d.resolvePrefix(s); ok && xIsAddr && p.Overlaps(xAddr) && p.Bits() <= xAddr.Bits() {
				return true
			}
		}
	}
	return false
}

func (d *policyDoc) resolve(x string) (netip.Prefix, bool) {
	return d.resolvePrefix(x)
}

func (d *policyDoc) resolvePrefix(s string) (netip.Prefix, bool) {
	if v, ok := d.Hosts[s]; ok {
		s = v
	}
	p, err := parseAddrOrPrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

// tagOwnedBy reports whether tag is one of owners or owned by one of them.
func (d *policyDoc) tagOwnedBy(tag string, owners []string) bool {
	if slices.Contains(owners, tag) {
		return true
	}
	for _, o := range d.TagOwners[tag] {
		if slices.Contains(owners, o) {
			return true
		}
	}
	return false
}
