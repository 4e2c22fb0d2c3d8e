package fake

import (
	"fmt"
	"slices"
	"strings"
)

// Checks of the access rules: grants and the older acls. Messages marked
// "captured" are Tailscale's own (see definitions.go for the source).

func (d *policyDoc) checkGrants() *policyError { return checkEach(d.Grants, d.checkGrant) }

func (d *policyDoc) checkGrant(g grantRule) error {
	// Empty src or dst arrays are fine: the grant then matches nothing
	// (captured: grant-h4, grant-h5 were accepted).
	if len(g.IP) == 0 && len(g.App) == 0 {
		return fmt.Errorf("ip and app can not both be empty") // captured: grant-h1, grant-h3, grant-h8
	}
	for _, s := range g.Src {
		if err := d.checkSrc(s); err != nil {
			return err
		}
	}
	for _, s := range g.Dst {
		if err := d.checkDst(s); err != nil {
			return err
		}
	}
	for _, v := range g.Via {
		if !strings.HasPrefix(v, "tag:") {
			return fmt.Errorf("via can only be a tag") // captured: grant-i4
		}
		if _, ok := d.TagOwners[v]; !ok {
			return fmt.Errorf("tag %q not found", v) // captured: grant-k30
		}
	}
	for _, p := range g.IP {
		if _, err := parseIPEntry(p); err != nil {
			return err
		}
	}
	for name := range g.App {
		if err := checkCapName(name); err != nil {
			return err
		}
	}
	if len(g.App) > 0 && slices.Contains(g.Dst, "autogroup:internet") {
		return fmt.Errorf("cannot use app grants with autogroup:internet") // captured: grant-v01, grant-v22
	}
	// A grant, unlike an ACL, may not pair autogroup:self with "*"
	// (captured: grant-p04-3 refused, acl-a04 accepted).
	if slices.Contains(g.Dst, "autogroup:self") && !allSelectUsers(g.Src, false) {
		return fmt.Errorf("%s", selfNeedsUserSources)
	}
	return nil
}

// allSelectUsers reports whether every source selects users only; star
// says whether "*" counts as such.
func allSelectUsers(srcs []string, star bool) bool {
	for _, s := range srcs {
		if !(selectsUsersOnly(s) || star && s == "*") {
			return false
		}
	}
	return true
}

// grantableTailscaleCaps are the tailscale.com capabilities a policy may
// grant. Tailscale accepted drive, kubernetes, relay and webui and refused
// funnel, ingress and relay-target (captured: grant-a5, grant-k9,
// grant-k10); tsidp is documented in tailscale/tailscale's cmd/tsidp.
var grantableTailscaleCaps = []string{
	"tailscale.com/cap/drive", "tailscale.com/cap/kubernetes",
	"tailscale.com/cap/relay", "tailscale.com/cap/webui",
	"tailscale.com/cap/tsidp",
}

// checkCapName checks an app capability name: "{domain}/{path}", outside
// tailscale.com unless it is one Tailscale lets policies grant.
func checkCapName(name string) error {
	domain, path, ok := strings.Cut(name, "/")
	if !ok || path == "" || !looksLikeDomain(domain) {
		return fmt.Errorf("capability name must have the form {domain}/{path}") // captured: grant-a2
	}
	if domain == "tailscale.com" && !slices.Contains(grantableTailscaleCaps, name) {
		return fmt.Errorf("capability name must not be in the tailscale.com domain") // captured: grant-a5
	}
	return nil
}

func (d *policyDoc) checkACLs() *policyError { return checkEach(d.ACLs, d.checkACL) }

func (d *policyDoc) checkACL(a aclRule) error {
	if a.Action != "accept" {
		return fmt.Errorf("action=%q is not supported", a.Action) // captured: acl-err06
	}
	for _, s := range a.Src {
		if err := d.checkSrc(s); err != nil {
			return err
		}
	}
	if a.Proto != "" {
		if _, err := parseProto(a.Proto); err != nil {
			return err
		}
	}
	self := false
	for _, e := range a.Dst {
		host, ports, ok := splitHostPort(e)
		if !ok {
			return fmt.Errorf("dst=%q: a port is required, like %q or %q", e, e+":443", e+":*")
		}
		if _, err := parsePorts(ports); err != nil {
			// captured: acl-err03 ("autogroup:self"), acl-err07 ("tag:server:ssh")
			return fmt.Errorf("dst=%q: %w", e, err)
		}
		if err := d.checkDst(host); err != nil {
			return err
		}
		self = self || host == "autogroup:self"
	}
	// captured: acl-a04 (src "*") accepted; acl-s04, acl-sf08 refused.
	if self && !allSelectUsers(a.Src, true) {
		return fmt.Errorf("%s", selfNeedsUserSources)
	}
	return nil
}
