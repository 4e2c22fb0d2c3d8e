package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/target"
)

// targetRules is the compiled form of the environment's targets: normalized
// names and parsed IP literals, so a request is checked without parsing.
type targetRules struct {
	names map[string][]uint16     // lowercased, no trailing dot
	ips   map[netip.Addr][]uint16 // unmapped
}

func compileTargets(targets []target.Target) (targetRules, error) {
	r := targetRules{names: map[string][]uint16{}, ips: map[netip.Addr][]uint16{}}
	for _, t := range targets {
		if t.Port == 0 {
			return r, fmt.Errorf("target %q: port is required (grants carry exact ports)", t.Host)
		}
		name, ip, err := normalizeHost(t.Host)
		if err != nil {
			return r, fmt.Errorf("target %q: %w", t.Host, err)
		}
		if ip.IsValid() {
			r.ips[ip] = append(r.ips[ip], t.Port)
		} else {
			r.names[name] = append(r.names[name], t.Port)
		}
	}
	return r, nil
}

// normalizeHost returns the canonical form of a request or target host: a
// lowercased name without trailing dot, or a parsed IP (the name is then
// the IP's string form).
func normalizeHost(host string) (name string, ip netip.Addr, err error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		a = a.Unmap()
		return a.String(), a, nil
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" {
		return "", netip.Addr{}, errors.New("empty host")
	}
	if len(h) > 253 {
		return "", netip.Addr{}, errors.New("host name longer than 253 bytes")
	}
	for _, c := range []byte(h) {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'
		if !ok {
			return "", netip.Addr{}, fmt.Errorf("host name contains %q", c)
		}
	}
	return h, netip.Addr{}, nil
}

// check applies rule 1: the (host, port) must be exactly a target. It
// returns the canonical host and, for IP literals, the address to dial.
func (r targetRules) check(host string, port uint16) (string, netip.Addr, *Refusal) {
	name, ip, err := normalizeHost(host)
	if err != nil {
		return host, netip.Addr{}, refuse(ReasonBadRequest, fmt.Sprintf("tailgate: bad host %q: %v", host, err))
	}
	var ports []uint16
	if ip.IsValid() {
		ports = r.ips[ip]
	} else {
		ports = r.names[name]
	}
	hp := net.JoinHostPort(name, strconv.Itoa(int(port)))
	if len(ports) == 0 {
		return name, ip, refuse(ReasonNotATarget, fmt.Sprintf("tailgate: %s is not a target of this environment", hp))
	}
	for _, p := range ports {
		if p == port {
			return name, ip, nil
		}
	}
	list := make([]string, len(ports))
	for i, p := range ports {
		list[i] = strconv.Itoa(int(p))
	}
	return name, ip, refuse(ReasonPortNotATarget, fmt.Sprintf(
		"tailgate: %s is a target of this environment only on port %s, not %d", name, strings.Join(list, ", "), port))
}
