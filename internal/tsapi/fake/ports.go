package fake

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A grant's "ip" entries and an ACL's destination ports use one syntax:
// "*", a port ("443"), a range ("80-443") or a list ("22,80"), optionally
// after a protocol ("tcp:443", "udp:*", "icmp:*", "6:22").

// anyProto marks an entry that applies to every protocol.
const anyProto = -1

// ipEntry is one parsed "ip" entry.
type ipEntry struct {
	proto  int // IANA protocol number, or anyProto
	ranges []portRange
}

type portRange struct{ lo, hi int }

func (e ipEntry) covers(proto, port int) bool {
	if e.proto != anyProto && e.proto != proto {
		return false
	}
	for _, r := range e.ranges {
		if r.lo <= port && port <= r.hi {
			return true
		}
	}
	return false
}

// protoNumbers are the protocol names the policy accepts, by IANA number.
var protoNumbers = map[string]int{
	"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50,
	"ah": 51, "ipv6-icmp": 58, "sctp": 132,
}

// parseProto reads a protocol name or number ("tcp", "6").
func parseProto(s string) (int, error) {
	if n, ok := protoNumbers[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("unknown protocol %q: use a protocol name (tcp, udp, icmp, ...) or a number 0-255", s)
	}
	return int(n), nil
}

// parseIPEntry parses one "ip" entry. A bare word is read as ports, so
// "icmp" alone fails the way it does on Tailscale (captured: grant-j7,
// `port range "icmp": invalid first integer`); protocols need ports:
// "icmp:*".
func parseIPEntry(s string) (ipEntry, error) {
	if s == "*" {
		return ipEntry{proto: anyProto, ranges: []portRange{{0, 65535}}}, nil
	}
	e := ipEntry{proto: anyProto}
	ports := s
	if proto, rest, ok := strings.Cut(s, ":"); ok {
		p, err := parseProto(proto)
		if err != nil {
			return ipEntry{}, err
		}
		e.proto, ports = p, rest
	}
	ranges, err := parsePorts(ports)
	if err != nil {
		return ipEntry{}, err
	}
	e.ranges = ranges
	return e, nil
}

// parsePorts parses "*", "443", "80-443" or a comma list of them. Errors
// read `port range "<ports>": ...` as Tailscale's do.
func parsePorts(s string) ([]portRange, error) {
	var out []portRange
	for _, part := range strings.Split(s, ",") {
		r, err := parsePortRange(part)
		if err != nil {
			return nil, fmt.Errorf("port range %q: %w", part, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// The first two messages are captured (grant-j7, grant-k23); "invalid last
// integer" is inferred from the first; the inverted-range one is ours.
var (
	errFirstPort    = errors.New("invalid first integer")
	errLastPort     = errors.New("invalid last integer")
	errZeroPort     = errors.New("first port must be >0, or use '*' for wildcard")
	errInvertedPort = errors.New("last port must not be less than the first")
)

func parsePortRange(s string) (portRange, error) {
	if s == "*" {
		return portRange{0, 65535}, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.ParseUint(a, 10, 16)
	if err != nil {
		return portRange{}, errFirstPort
	}
	if lo == 0 {
		return portRange{}, errZeroPort
	}
	hi := lo
	if isRange {
		if hi, err = strconv.ParseUint(b, 10, 16); err != nil {
			return portRange{}, errLastPort
		}
		if hi < lo {
			return portRange{}, errInvertedPort
		}
	}
	return portRange{int(lo), int(hi)}, nil
}
