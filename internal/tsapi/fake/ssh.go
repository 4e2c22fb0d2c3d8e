package fake

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// sshRule is one entry of the policy's "ssh" section: who (src) may open
// Tailscale SSH sessions to which devices (dst) as which login users.
type sshRule struct {
	Action      string          `json:"action"`
	Src         []string        `json:"src"`
	Dst         []string        `json:"dst"`
	Users       []string        `json:"users"`
	CheckPeriod json.RawMessage `json:"checkPeriod"`
	AcceptEnv   []string        `json:"acceptEnv"`
}

// maxCheckPeriod is the longest re-authentication period of a check rule.
const maxCheckPeriod = 168 * time.Hour

// action is the rule's action as Tailscale reads it: surrounding
// whitespace does not matter (captured: ssh-malformed-action-whitespace
// was accepted), case does.
func (r sshRule) action() string { return strings.TrimSpace(r.Action) }

func (d *policyDoc) checkSSH() *policyError { return checkEach(d.SSH, d.checkSSHRule) }

// checkSSHRule applies Tailscale's checks. Messages marked "captured" are
// Tailscale's (see definitions.go); the src/dst combination rules follow
// https://tailscale.com/kb/1193/tailscale-ssh ("tags cannot SSH into
// user-owned devices", "a user destination needs that same user as the
// only source") in words of our own, as no refusal of them was captured.
func (d *policyDoc) checkSSHRule(r sshRule) error {
	switch a := r.action(); a {
	case "accept", "check":
	case "":
		return fmt.Errorf("action must be specified") // captured
	default:
		return fmt.Errorf("%q is not a valid action", r.Action) // captured: "deny", "Accept"
	}
	for _, s := range r.Src {
		if domain, ok := userWildcardDomain(s); ok {
			if err := checkWildcardDomain(domain); err != nil {
				return fmt.Errorf("[ssh] %w", err) // captured: ssh-b4
			}
			continue
		}
		if err := d.checkSrc(s); err != nil {
			return err
		}
	}
	for _, s := range r.Dst {
		if err := d.checkSSHDst(s); err != nil {
			return err
		}
	}
	if err := checkSSHUsers(r.Users); err != nil {
		return err
	}
	if err := checkCheckPeriod(r.CheckPeriod); err != nil {
		return err
	}
	for _, e := range r.AcceptEnv {
		if e == "" {
			return fmt.Errorf("acceptEnv values cannot be empty") // captured
		}
	}
	return checkSSHCombination(r.Src, r.Dst)
}

// checkSSHDst allows devices chosen by owner or tag, never by address:
// a hosts alias or IP is refused (captured: `invalid dst "srv"`).
func (d *policyDoc) checkSSHDst(s string) error {
	if _, err := d.hostPrefix(s); err == nil {
		return fmt.Errorf("invalid dst %q", s)
	}
	return d.checkDst(s)
}

func checkSSHUsers(users []string) error {
	if len(users) == 0 {
		return fmt.Errorf("users must be specified") // captured: missing, null, []
	}
	for _, u := range users {
		switch t := strings.TrimSpace(u); {
		case t == "" || t == "*":
			return fmt.Errorf("user %q is not valid", u) // captured
		case strings.HasPrefix(t, "localpart:*@"):
			if domain := strings.TrimPrefix(t, "localpart:*@"); domain != "" {
				if err := checkWildcardDomain(domain); err != nil {
					return err // captured: ssh-malformed-user-localpart-multi-glob
				}
			}
		}
	}
	return nil
}

// checkCheckPeriod reads "always" or a Go duration between 0 and 168h
// (captured: "abc", "-1m", "168h0m1s" and "200h" refused; "0s", "30s",
// "168h" and null accepted).
func checkCheckPeriod(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("checkPeriod must be a string like \"12h\" or \"always\"")
	}
	if s == "always" {
		return nil
	}
	p, err := time.ParseDuration(s)
	if err != nil {
		return err // Go's own words, as Tailscale sends them: time: invalid duration "abc"
	}
	if p < 0 {
		return fmt.Errorf("checkPeriod %s must be a positive duration", p)
	}
	if p > maxCheckPeriod {
		return fmt.Errorf("checkPeriod %s is above the max (168h)", p)
	}
	return nil
}

// checkSSHCombination enforces which sources may reach which destinations:
// a user destination only from that same user alone, autogroup:self only
// from users, and no user-owned destination from a tagged source.
func checkSSHCombination(src, dst []string) error {
	tagged := slices.ContainsFunc(src, func(s string) bool {
		return strings.HasPrefix(s, "tag:") || s == "autogroup:tagged"
	})
	for _, t := range dst {
		userOwned := isUser(t) || t == "autogroup:self" || t == "autogroup:member"
		switch {
		case userOwned && tagged:
			return fmt.Errorf("dst %q: tagged sources cannot SSH into user-owned devices; use tags as destinations", t)
		case isUser(t) && !(len(src) == 1 && src[0] == t):
			return fmt.Errorf("dst %q: a user destination needs that same user as the only src; use autogroup:self for users' own devices", t)
		case t == "autogroup:self" && !allSelectUsers(src, false):
			return fmt.Errorf("%s", selfNeedsUserSources)
		}
	}
	return nil
}
