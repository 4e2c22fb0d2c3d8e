package fake

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
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
	SSH       []sshRule           `json:"ssh"`
	NodeAttrs []nodeAttr          `json:"nodeAttrs"`
	Tests     []policyTest        `json:"tests"`
	SSHTests  []sshTest           `json:"sshTests"`
}

type aclRule struct {
	Action string   `json:"action"`
	Src    []string `json:"src"`
	Dst    []string `json:"dst"`
	Proto  string   `json:"proto"`
	// Older spellings of src and dst, still accepted by Tailscale.
	Users []string `json:"users"`
	Ports []string `json:"ports"`
}

// normalize folds the older field names into the current ones.
func (a *aclRule) normalize() {
	a.Src = append(a.Src, a.Users...)
	a.Dst = append(a.Dst, a.Ports...)
	a.Users, a.Ports = nil, nil
}

type grantRule struct {
	Src []string                   `json:"src"`
	Dst []string                   `json:"dst"`
	IP  []string                   `json:"ip"`
	App map[string]json.RawMessage `json:"app"`
	Via []string                   `json:"via"`
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
// API sends as {"message", "data":[{"user","errors"}]}. Status is the HTTP
// status of a rejected write; zero means 400.
type policyError struct {
	Message string
	Data    []errorData
	Status  int
}

type errorData struct {
	User   string   `json:"user,omitempty"`
	Errors []string `json:"errors"`
}

func (e *policyError) Error() string { return e.Message }

// status is the HTTP status a write rejected with e answers.
func (e *policyError) status() int {
	if e.Status != 0 {
		return e.Status
	}
	return http.StatusBadRequest
}

func invalid(format string, args ...any) *policyError {
	return &policyError{Message: fmt.Sprintf(format, args...)}
}

// parsePolicy turns HuJSON into the fake's view of a policy and validates
// it the way Tailscale does when the policy is saved, tests included.
func parsePolicy(huj []byte) (*policyDoc, *policyError) {
	doc, perr := decodePolicy(huj)
	if perr != nil {
		return nil, perr
	}
	if perr := doc.check(); perr != nil {
		return nil, perr
	}
	return doc, nil
}

// decodePolicy only parses: HuJSON syntax, known sections and field types.
// Reading tag ownership for key creation needs no more than this, and must
// keep working while a seeded policy would fail validation.
func decodePolicy(huj []byte) (*policyDoc, *policyError) {
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
	for i := range doc.ACLs {
		doc.ACLs[i].normalize()
	}
	for i := range doc.Tests {
		doc.Tests[i].normalize()
	}
	return &doc, nil
}

// check validates a decoded policy. Tailscale answers with the first
// problem it finds, as one message; the sections are checked in the order
// their captured errors suggest (definitions first, then rules, then tests).
func (d *policyDoc) check() *policyError {
	checks := []func() *policyError{
		d.checkTagOwners, d.checkGroups, d.checkHosts,
		d.checkGrants, d.checkACLs, d.checkSSH, d.checkNodeAttrs,
		d.checkSSHTestShapes,
	}
	for _, c := range checks {
		if perr := c(); perr != nil {
			return perr
		}
	}
	return d.runAllTests()
}

// checkEach checks a section's rules in order and answers the first
// problem as Tailscale does, as the whole policy's one error.
func checkEach[R any](rules []R, check func(R) error) *policyError {
	for _, r := range rules {
		if err := check(r); err != nil {
			return invalid("%v", err)
		}
	}
	return nil
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
