// Package target parses what an environment must reach: one host:port,
// checked and normalised, and classified by the kind of host it names (a
// Tailscale IP, a private IP, a device name or a DNS name). Every package
// that deals with targets (grant planning, the run proxy, verification,
// storage) uses this one type.
package target

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxPerEnvironment is how many targets one environment may have. It keeps the
// policy entries (and the verification run) small; an environment needing
// more is better split in two.
const MaxPerEnvironment = 64

// DNS limits (RFC 1035) applied to target names.
const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// maxEchoLen bounds how much of a bad target is echoed back in an error, so
// a megabyte of garbage in a request does not come back in the answer.
const maxEchoLen = 300

// Kind says what sort of host a target names; it decides how the target is
// granted (see [NewPlan]).
type Kind int

const (
	// KindTailscaleIP is an address in the tailnet's own ranges
	// (100.64.0.0/10 or fd7a:115c:a1e0::/48): granted as exactly itself.
	KindTailscaleIP Kind = iota + 1
	// KindPrivateIP is any other IP, normally behind a subnet router:
	// granted as itself, reachable only through an approved subnet route.
	KindPrivateIP
	// KindDeviceName is a tailnet device, by its single-label name
	// ("staging-box") or its MagicDNS name ("staging-box.tail1234.ts.net"):
	// granted as that device's addresses.
	KindDeviceName
	// KindDNSName is any other name ("staging.internal.example.com"),
	// typically served by split DNS: a policy cannot name it, so it is
	// granted as every approved subnet route.
	KindDNSName
)

// String names the kind in the words the API and UI use.
func (k Kind) String() string {
	switch k {
	case KindTailscaleIP:
		return "tailscale-ip"
	case KindPrivateIP:
		return "private-ip"
	case KindDeviceName:
		return "device-name"
	case KindDNSName:
		return "dns-name"
	}
	return "unknown"
}

// Target is one host:port an environment must reach, checked and
// normalised. Construct it with [Parse] or [ParseList].
type Target struct {
	// Host is the host part, normalised: an IP in canonical form (without
	// brackets), or a lower-case name without a trailing dot.
	Host string
	// Port is the TCP port, 1–65535.
	Port uint16
	// Kind is how the host was classified when parsed. A dotted name under
	// the tailnet's MagicDNS suffix is parsed as KindDNSName and becomes a
	// device name in [NewPlan], which knows the suffix.
	Kind Kind
	// Addr is the address for the IP kinds; invalid for names.
	Addr netip.Addr
}

// String renders the target as host:port, with brackets around IPv6.
func (t Target) String() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
}

// Error says what is wrong with one target (or with the list, when
// Target is empty). Problem is a sentence a person can act on; Target is
// the input as given, shortened and made valid UTF-8 so it can be echoed
// in a 400 answer.
type Error struct {
	Target  string
	Problem string
}

func (e *Error) Error() string {
	if e.Target == "" {
		return "targets: " + e.Problem
	}
	return fmt.Sprintf("target %q: %s", e.Target, e.Problem)
}

// NewError is a target error for raw: the input shortened and made valid
// UTF-8 so it can be echoed, and a problem a person can act on.
func NewError(raw, problem string, args ...any) *Error {
	echo := strings.ToValidUTF8(raw, "\uFFFD")
	if len(echo) > maxEchoLen {
		cut := maxEchoLen
		for cut > 0 && !utf8.RuneStart(echo[cut]) {
			cut--
		}
		echo = echo[:cut] + "…"
	}
	return &Error{Target: echo, Problem: fmt.Sprintf(problem, args...)}
}

// Tailscale's address ranges: every node's addresses are in these.
var (
	tailscaleV4 = netip.MustParsePrefix("100.64.0.0/10")
	tailscaleV6 = netip.MustParsePrefix("fd7a:115c:a1e0::/48")
)

// IsTailscaleIP reports whether a is in the tailnet's own address ranges.
func IsTailscaleIP(a netip.Addr) bool {
	a = a.Unmap()
	return tailscaleV4.Contains(a) || tailscaleV6.Contains(a)
}

// ParseList parses a whole target list: every entry with [Parse],
// then the list itself (not empty, at most [MaxPerEnvironment], no duplicates
// after normalisation, so "Staging-Box:443" and "staging-box:443" are one
// target). The first problem found is returned as a *Error.
func ParseList(raw []string) ([]Target, error) {
	if len(raw) == 0 {
		return nil, &Error{Problem: "no targets given; name at least one host:port, e.g. staging.internal.example.com:443"}
	}
	if len(raw) > MaxPerEnvironment {
		return nil, &Error{Problem: fmt.Sprintf("%d targets given; an environment may have at most %d", len(raw), MaxPerEnvironment)}
	}
	out := make([]Target, 0, len(raw))
	seen := make(map[string]string, len(raw))
	for _, s := range raw {
		t, err := Parse(s)
		if err != nil {
			return nil, err
		}
		key := t.String()
		if first, dup := seen[key]; dup {
			if first == s {
				return nil, NewError(s, "listed twice")
			}
			return nil, NewError(s, "is the same target as %q", first)
		}
		seen[key] = s
		out = append(out, t)
	}
	return out, nil
}

// Parse parses one "host:port" target. The host is an IPv4 address,
// a bracketed IPv6 address ("[fd7a:115c:a1e0::1]:443"), a device name
// ("staging-box") or a DNS name ("staging.internal.example.com"). Ranges,
// wildcards, URLs and addresses that cannot be a host on a tailnet
// (unspecified, loopback, multicast, link-local) are refused.
func Parse(s string) (Target, error) {
	if !utf8.ValidString(s) {
		return Target{}, NewError(s, "is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return Target{}, NewError(s, "contains a control character (%U)", r)
		}
	}
	if strings.TrimSpace(s) != s {
		return Target{}, NewError(s, "has leading or trailing spaces")
	}
	if s == "" {
		return Target{}, NewError(s, "is empty; give host:port, e.g. staging.internal.example.com:443")
	}
	if i := strings.Index(s, "://"); i >= 0 {
		return Target{}, NewError(s, "is a URL; give host:port instead, e.g. staging.internal.example.com:443")
	}
	if strings.ContainsAny(s, "/") {
		return Target{}, NewError(s, "is an address range (CIDR); tailgate grants single hosts, so give one host:port")
	}
	if strings.ContainsAny(s, "*?") {
		return Target{}, NewError(s, "contains a wildcard; tailgate grants single hosts, so give one host:port")
	}
	if len(s) > maxNameLen+len("[]:65535") {
		return Target{}, NewError(s, "is too long (%d bytes); a host name has at most %d characters", len(s), maxNameLen)
	}

	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		switch {
		case strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "["):
			return Target{}, NewError(s, "IPv6 addresses need brackets around them, e.g. [fd7a:115c:a1e0::1]:443")
		case !strings.Contains(strings.TrimPrefix(s, "["), ":") || strings.HasSuffix(s, "]"):
			return Target{}, NewError(s, "has no port; give host:port, e.g. %s:443", strings.Trim(s, "[]"))
		default:
			return Target{}, NewError(s, "is not host:port (%v)", unwrapAddrErr(err))
		}
	}
	if portStr == "" {
		return Target{}, NewError(s, "has no port; give host:port, e.g. %s:443", host)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return Target{}, NewError(s, "%v", err)
	}
	if host == "" {
		return Target{}, NewError(s, "has no host before the port")
	}

	if strings.Contains(host, "%") {
		return Target{}, NewError(s, "has an IPv6 zone (%%...); zones are local to one machine and cannot be granted")
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		addr = addr.Unmap()
		if p := addrProblem(addr); p != "" {
			return Target{}, NewError(s, "%s", p)
		}
		if addr.Is6() && !strings.HasPrefix(s, "[") {
			return Target{}, NewError(s, "IPv6 addresses need brackets around them, e.g. [fd7a:115c:a1e0::1]:443")
		}
		kind := KindPrivateIP
		if IsTailscaleIP(addr) {
			kind = KindTailscaleIP
		}
		return Target{Host: addr.String(), Port: port, Kind: kind, Addr: addr}, nil
	}
	if strings.HasPrefix(s, "[") {
		return Target{}, NewError(s, "brackets are only for IPv6 addresses, and %q is not one", host)
	}
	if looksLikeIPv4(host) {
		return Target{}, NewError(s, "%q is not a valid IPv4 address", host)
	}

	name, problem := NormaliseName(host)
	if problem != "" {
		return Target{}, NewError(s, "%s", problem)
	}
	kind := KindDNSName
	if !strings.Contains(name, ".") {
		kind = KindDeviceName
	}
	return Target{Host: name, Port: port, Kind: kind}, nil
}

func parsePort(p string) (uint16, error) {
	for _, r := range p {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("port %q is not a number; give a TCP port 1-65535", p)
		}
	}
	n, err := strconv.ParseUint(p, 10, 32)
	if err != nil || n > 65535 {
		return 0, fmt.Errorf("port %s is out of range; give a TCP port 1-65535", p)
	}
	if n == 0 {
		return 0, fmt.Errorf("port 0 is not a port a host listens on; give a TCP port 1-65535")
	}
	return uint16(n), nil
}

// addrProblem says why an address cannot be a target, or "" if it can.
func addrProblem(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "is the wildcard address " + a.String() + ", which means every host; name one host"
	case a.IsLoopback():
		return "is a loopback address: it would be the runner itself, not a host on your network"
	case a.IsMulticast():
		return "is a multicast address, not a host"
	case a.IsLinkLocalUnicast():
		return "is a link-local address, which is not reachable through a tailnet"
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "is the broadcast address, not a host"
	}
	return ""
}

// looksLikeIPv4 reports whether host is all digits and dots, i.e. was meant
// as an IPv4 address (and is not a valid one, if ParseAddr refused it).
func looksLikeIPv4(host string) bool {
	return strings.Trim(host, "0123456789.") == "" && strings.Contains(host, ".")
}

// NormaliseName lower-cases a host name, drops one trailing dot, and checks
// it against DNS rules (RFC 1035 lengths; letters, digits, hyphens and, for
// internal names, underscores). It returns a problem sentence if it fails.
func NormaliseName(host string) (string, string) {
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "" {
		return "", "has no host before the port"
	}
	if len(name) > maxNameLen {
		return "", fmt.Sprintf("host name is %d characters long; DNS allows at most %d", len(name), maxNameLen)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return "", "host name has an empty label (two dots in a row, or a leading dot)"
		}
		if len(label) > maxLabelLen {
			return "", fmt.Sprintf("host name label %q is %d characters long; DNS allows at most %d per label", shorten(label), len(label), maxLabelLen)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Sprintf("host name label %q starts or ends with a hyphen", label)
		}
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			case r > unicode.MaxASCII:
				return "", "host name has non-ASCII characters; give the ASCII (punycode, xn--…) form"
			default:
				return "", fmt.Sprintf("host name contains %q; names use letters, digits and hyphens", r)
			}
		}
	}
	return name, ""
}

func shorten(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}

func unwrapAddrErr(err error) string {
	if ae, ok := err.(*net.AddrError); ok {
		return ae.Err
	}
	return err.Error()
}
