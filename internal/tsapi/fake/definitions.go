package fake

import (
	"fmt"
	"strings"
)

// The named definitions (tagOwners, groups, hosts) are checked before any
// rule, so that a rule's error can assume every name it uses is well formed.
//
// Messages marked "captured" are the real API's words, as recorded from
// Tailscale's SaaS by headscale's compatibility captures
// (github.com/juanfont/headscale, hscontrol/policy/v2/testdata/*_results).

func (d *policyDoc) checkTagOwners() *policyError {
	for name, owners := range d.TagOwners {
		if !strings.HasPrefix(name, "tag:") || len(name) == len("tag:") {
			return invalid("tagOwners: %q is not a tag; tags start with \"tag:\"", name)
		}
		if !startsWithASCIILetter(strings.TrimPrefix(name, "tag:")) {
			// captured: ssh-unicode-cyrillic-tag
			return invalid("tagOwners[%q]: tag names must start with a letter, after 'tag:'", name)
		}
		for _, o := range owners {
			if strings.HasPrefix(o, "tag:") {
				if _, ok := d.TagOwners[o]; !ok {
					return invalid("tagOwners[%q]: owner tag %q is not defined in tagOwners", name, o)
				}
			}
		}
	}
	return nil
}

func startsWithASCIILetter(s string) bool {
	return s != "" && (s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z')
}

func (d *policyDoc) checkGroups() *policyError {
	for name, members := range d.Groups {
		if !strings.HasPrefix(name, "group:") {
			return invalid("groups: %q is not a group; groups start with \"group:\"", name)
		}
		for _, m := range members {
			if strings.HasPrefix(m, "group:") {
				// captured: ssh-group-nested-two-deep (groups hold users only)
				return invalid("groups[%q]: %q: group members cannot be recursive", name, m)
			}
		}
	}
	return nil
}

func (d *policyDoc) checkHosts() *policyError {
	for name, v := range d.Hosts {
		if _, err := parseAddrOrPrefix(v); err != nil {
			return invalid("hosts[%q]: %q is not an IP address or CIDR", name, v)
		}
	}
	return nil
}

// tagNotFound is the API's wording for an undefined tag on a rule's
// source side (captured: acl-err01, grant-h7).
func tagNotFound(tag string) error {
	return fmt.Errorf("tag not found: %q", tag)
}
