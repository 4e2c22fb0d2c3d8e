package fake

import (
	"fmt"
	"strings"
)

// sshTest is one entry of "sshTests": from src, to every dst, each login
// user in accept must be allowed (by an accept or check rule), each in
// check must be allowed by a check rule, and each in deny must not be
// allowed at all.
type sshTest struct {
	Src    string   `json:"src"`
	Dst    []string `json:"dst"`
	Accept []string `json:"accept"`
	Check  []string `json:"check"`
	Deny   []string `json:"deny"`
}

// checkSSHTestShapes refuses destinations an SSH test cannot name. These
// refuse the policy with their own message rather than "test(s) failed"
// (captured: sshtest-malformed-dst-autogroup-internet, -dst-cidr,
// -dst-with-port).
func (d *policyDoc) checkSSHTestShapes() *policyError {
	for _, t := range d.SSHTests {
		for _, dst := range t.Dst {
			switch {
			case dst == "autogroup:internet" || strings.Contains(dst, "/"):
				return invalid("SSH tests dst contains disallowed element %q", dst)
			case strings.HasPrefix(dst, "tag:"):
				if _, ok := d.TagOwners[dst]; !ok {
					return invalid("SSH tests dst contains unknown tag %q", dst)
				}
			}
		}
	}
	return nil
}

// runSSHTest returns one SSH test's failures. The failure lines are the
// fake's own wording, modelled on the documented network-test lines
// ("want: Accept, got: Drop"); Tailscale's were not captured.
func (d *policyDoc) runSSHTest(t sshTest) []string {
	switch {
	case t.Src == "":
		return []string{"src is required"}
	case len(t.Dst) == 0:
		return []string{"dst is required"}
	case len(t.Accept)+len(t.Check)+len(t.Deny) == 0:
		return []string{`an SSH test needs "accept", "check" or "deny" users`}
	}
	var errs []string
	expect := func(users []string, want sshAction) {
		for _, u := range users {
			if strings.TrimSpace(u) == "" {
				errs = append(errs, "empty login user")
				continue
			}
			for _, dst := range t.Dst {
				got := d.sshVerdict(t.Src, dst, u)
				if !want.satisfiedBy(got) {
					errs = append(errs, fmt.Sprintf("login %q to %q: want: %s, got: %s", u, dst, want, got))
				}
			}
		}
	}
	expect(t.Accept, sshAccept)
	expect(t.Check, sshCheck)
	expect(t.Deny, sshDrop)
	return errs
}

// sshAction is what the policy lets an SSH session do.
type sshAction string

const (
	sshDrop   sshAction = "Drop"
	sshAccept sshAction = "Accept"
	sshCheck  sshAction = "Check"
)

// satisfiedBy reports whether a verdict meets a test's expectation: a
// check rule also lets the session in, so it satisfies "accept"
// (captured: sshtest-action-check-treated-as-allowed).
func (want sshAction) satisfiedBy(got sshAction) bool {
	if want == sshAccept {
		return got != sshDrop
	}
	return want == got
}

// sshVerdict is the action the ssh rules give src logging in to dst as
// login. A matching check rule wins over an accept rule: the session is
// held for re-authentication either way.
func (d *policyDoc) sshVerdict(src, dst, login string) sshAction {
	got := sshDrop
	for _, r := range d.SSH {
		if !d.srcMatches(r.Src, src) || !d.dstMatches(r.Dst, dst, src) || !sshUserMatches(r.Users, login, src) {
			continue
		}
		switch r.action() {
		case "check":
			return sshCheck
		case "accept":
			got = sshAccept
		}
	}
	return got
}

// sshUserMatches reports whether a rule's users let src log in as login:
// by name, as any user but root (autogroup:nonroot), or as the local part
// of src's own login when its domain matches (localpart:*@domain).
func sshUserMatches(users []string, login, src string) bool {
	for _, u := range users {
		u = strings.TrimSpace(u)
		switch {
		case u == login:
			return true
		case u == "autogroup:nonroot":
			if login != "root" {
				return true
			}
		case strings.HasPrefix(u, "localpart:*@"):
			local, domain, ok := strings.Cut(src, "@")
			if ok && strings.EqualFold(domain, strings.TrimPrefix(u, "localpart:*@")) && local == login {
				return true
			}
		}
	}
	return false
}
