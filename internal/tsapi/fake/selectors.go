package fake

import (
	"fmt"
	"net/netip"
	"strings"
)

// A selector names who or what a rule applies to: "*", a user, a
// user:*@domain wildcard, a group, a tag, an autogroup, a hosts alias, an
// IP address or a CIDR. These helpers classify and check them.

// isUser reports whether s names one user by login ("alice@example.com").
func isUser(s string) bool {
	return strings.Contains(s, "@") && !strings.Contains(s, ":")
}

// userWildcardDomain returns the domain of a "user:*@domain" selector,
// which selects every user of that domain.
func userWildcardDomain(s string) (string, bool) {
	return strings.CutPrefix(s, "user:*@")
}

// checkWildcardDomain refuses a user:*@ or localpart:*@ domain that cannot
// be a domain at all. Tailscale also refuses domains not associated with
// the tailnet; the fake has no notion of that, so any real-looking domain
// passes (captured wording: ssh-malformed-user-localpart-multi-glob).
func checkWildcardDomain(domain string) error {
	if !looksLikeDomain(domain) {
		return fmt.Errorf("%s is not associated with this Tailnet and cannot be used in user:*@<domain> expressions", domain)
	}
	return nil
}

func looksLikeDomain(s string) bool {
	if !strings.Contains(s, ".") {
		return false
	}
	for _, label := range strings.Split(strings.ToLower(s), ".") {
		if label == "" {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// userAutogroups are the autogroups that select users (roles and
// membership); with autogroup:self they mean "each of these users, to
// their own devices".
var userAutogroups = []string{
	"autogroup:member", "autogroup:admin", "autogroup:owner",
	"autogroup:it-admin", "autogroup:network-admin",
	"autogroup:billing-admin", "autogroup:auditor",
}

// selectsUsersOnly reports whether s selects users and nothing else: the
// sources Tailscale allows next to an autogroup:self destination.
func selectsUsersOnly(s string) bool {
	if isUser(s) || strings.HasPrefix(s, "group:") {
		return true
	}
	if _, ok := userWildcardDomain(s); ok {
		return true
	}
	for _, ag := range userAutogroups {
		if s == ag {
			return true
		}
	}
	return false
}

const selfNotOnSrc = `"autogroup:self" not valid on the src side of a rule` // captured: acl-err02, grant-h10

// selfNeedsUserSources is the API's answer when autogroup:self is a
// destination of a rule whose sources are not all users (captured:
// grant-p04-3, grant-v24, acl-s04, acl-sf08).
const selfNeedsUserSources = "autogroup:self can only be used with users, groups, or supported autogroups"

// checkSrc checks one source selector of a grant, ACL or SSH rule.
func (d *policyDoc) checkSrc(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty entry")
	case s == "*":
		return nil
	case s == "autogroup:self":
		return fmt.Errorf("%s", selfNotOnSrc)
	case strings.HasPrefix(s, "tag:"):
		if strings.Count(s, ":") > 1 {
			return fmt.Errorf("%q: ports are not allowed here; put them in \"ip\"", s)
		}
		if _, ok := d.TagOwners[s]; !ok {
			return fmt.Errorf("src=%w", tagNotFound(s))
		}
		return nil
	}
	return d.checkCommon(s)
}

// checkDst checks one destination selector without a port: a grant's dst,
// the host part of an ACL's dst, an SSH rule's dst.
func (d *policyDoc) checkDst(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty entry")
	case s == "*":
		return nil
	case s == "autogroup:danger-all":
		return fmt.Errorf("cannot use autogroup:danger-all as a dst") // captured: grant-k7, grant-k8
	case strings.HasPrefix(s, "tag:"):
		if strings.Count(s, ":") > 1 {
			return fmt.Errorf("%q: ports are not allowed here; put them in \"ip\"", s)
		}
		if _, ok := d.TagOwners[s]; !ok {
			return fmt.Errorf("dst=%q: %w", s, tagNotFound(s)) // captured: acl-err05
		}
		return nil
	}
	if p, err := d.hostPrefix(s); err == nil && p.Bits() == 0 {
		// captured: grant-v04, grant-v05
		return fmt.Errorf("dst %q: to allow all IP addresses, use \"*\" or \"autogroup:internet\"", s)
	}
	if err := d.checkCommon(s); err != nil {
		if _, _, ok := splitHostPort(s); ok {
			return fmt.Errorf("%q: ports are not allowed here; put them in \"ip\"", s)
		}
		return err
	}
	return nil
}

// checkCommon checks what both sides accept alike: users, user
// wildcards, groups, autogroups, hosts aliases, IP addresses and CIDRs.
func (d *policyDoc) checkCommon(s string) error {
	if domain, ok := userWildcardDomain(s); ok {
		return checkWildcardDomain(domain)
	}
	switch {
	case strings.HasPrefix(s, "group:"):
		if _, ok := d.Groups[s]; !ok {
			return fmt.Errorf("group %q is not defined", s)
		}
		return nil
	case strings.HasPrefix(s, "autogroup:"), strings.HasPrefix(s, "ipset:"), strings.HasPrefix(s, "svc:"):
		return nil
	case isUser(s):
		return nil
	}
	if _, err := d.hostPrefix(s); err != nil {
		return fmt.Errorf("%q is not a known host, tag, group, user or IP address (DNS names cannot be used)", s)
	}
	return nil
}

// hostPrefix resolves a hosts alias, IP address or CIDR to a prefix.
func (d *policyDoc) hostPrefix(s string) (netip.Prefix, error) {
	if v, ok := d.Hosts[s]; ok {
		s = v
	}
	return parseAddrOrPrefix(s)
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
