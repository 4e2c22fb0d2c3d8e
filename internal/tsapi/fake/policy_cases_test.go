package fake_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// The cases below are Tailscale's own verdicts. "captured" names a
// recording of Tailscale's SaaS answering that policy, kept by headscale
// (github.com/juanfont/headscale, hscontrol/policy/v2/testdata/<dir>/<id>.hujson);
// "docs" names a documented rule whose refusal was not captured, so its
// message is the fake's own.

// policyBase holds the definitions every case may use.
const policyBase = `
	"tagOwners": {"tag:server": ["autogroup:admin"], "tag:client": ["autogroup:admin"], "tag:router": ["autogroup:admin"]},
	"groups":    {"group:dev": ["alice@example.com", "bob@example.com"], "group:empty": []},
	"hosts":     {"webserver": "100.64.0.16", "internal": "10.0.0.0/8"},
`

type policyCase struct {
	name   string
	source string // where the verdict comes from
	body   string // sections added to policyBase
	want   string // "" accepts; else the exact message
	detail string // for "test(s) failed": a substring of one data error
}

func runPolicyCases(t *testing.T, cases []policyCase) {
	t.Helper()
	r := newRig(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pol := "{" + policyBase + tc.body + "}"
			resp, body := r.do(t, "POST", "/api/v2/tailnet/-/acl/validate", pol, nil)
			var got struct {
				Message string
				Data    []struct {
					User   string
					Errors []string
				}
			}
			if len(body) > 0 {
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("body %s: %v", body, err)
				}
			}
			if resp.StatusCode != http.StatusOK && tc.want != "internal server error" {
				t.Fatalf("validate answered %d: %s", resp.StatusCode, body)
			}
			if got.Message != tc.want {
				t.Fatalf("[%s] message %q, want %q (data %v)", tc.source, got.Message, tc.want, got.Data)
			}
			if tc.detail != "" {
				var all []string
				for _, d := range got.Data {
					all = append(all, d.User+": "+strings.Join(d.Errors, "; "))
				}
				if !strings.Contains(strings.Join(all, "\n"), tc.detail) {
					t.Fatalf("[%s] data %q lacks %q", tc.source, all, tc.detail)
				}
			}
		})
	}
}

func TestPolicyAutogroupSelf(t *testing.T) {
	runPolicyCases(t, []policyCase{
		{"grant src", "captured grant_results/grant-h10",
			`"grants": [{"src": ["autogroup:self"], "dst": ["*"], "app": {"example.com/cap/test": [{}]}}]`,
			`"autogroup:self" not valid on the src side of a rule`, ""},
		{"acl src", "captured acl_results/acl-err02",
			`"acls": [{"action": "accept", "src": ["autogroup:self"], "dst": ["tag:server:22"]}]`,
			`"autogroup:self" not valid on the src side of a rule`, ""},
		{"grant dst from *", "captured grant_results/grant-p04-3",
			`"grants": [{"src": ["*"], "dst": ["autogroup:self"], "ip": ["*"]}]`,
			"autogroup:self can only be used with users, groups, or supported autogroups", ""},
		{"grant dst from a tag", "captured grant_results/grant-v24",
			`"grants": [{"src": ["tag:server"], "dst": ["autogroup:self"], "app": {"example.com/cap/self-cap": [{}]}}]`,
			"autogroup:self can only be used with users, groups, or supported autogroups", ""},
		{"acl dst from a tag", "captured acl_results/acl-sf03",
			`"acls": [{"action": "accept", "src": ["tag:client"], "dst": ["autogroup:self:*"]}]`,
			"autogroup:self can only be used with users, groups, or supported autogroups", ""},
		{"acl dst from members and a tag", "captured acl_results/acl-sf08",
			`"acls": [{"action": "accept", "src": ["autogroup:member", "tag:client"], "dst": ["autogroup:self:*"]}]`,
			"autogroup:self can only be used with users, groups, or supported autogroups", ""},
		{"acl dst from a host", "captured acl_results/acl-s06",
			`"acls": [{"action": "accept", "src": ["webserver"], "dst": ["autogroup:self:*"]}]`,
			"autogroup:self can only be used with users, groups, or supported autogroups", ""},
		{"acl dst without port", "captured acl_results/acl-err03",
			`"acls": [{"action": "accept", "src": ["*"], "dst": ["autogroup:self"]}]`,
			`dst="autogroup:self": port range "self": invalid first integer`, ""},
		{"acl dst from * is fine", "captured acl_results/acl-a04",
			`"acls": [{"action": "accept", "src": ["*"], "dst": ["autogroup:self:*"]}]`, "", ""},
		{"grant dst from members", "captured grant_results/grant-p09-13e",
			`"grants": [{"src": ["autogroup:member"], "dst": ["autogroup:self"], "ip": ["*"]}]`, "", ""},
		{"grant dst from a user", "captured grant_results/grant-p09-13f",
			`"grants": [{"src": ["alice@example.com"], "dst": ["autogroup:self"], "ip": ["*"]}]`, "", ""},
		{"grant dst from a group", "captured grant_results/grant-p09-13g",
			`"grants": [{"src": ["group:dev"], "dst": ["autogroup:self"], "ip": ["*"]}]`, "", ""},
	})
}

func TestPolicyAppCapabilities(t *testing.T) {
	app := func(name string) string {
		return `"grants": [{"src": ["*"], "dst": ["*"], "app": {"` + name + `": [{}]}}]`
	}
	runPolicyCases(t, []policyCase{
		{"URL, not domain/path", "captured grant_results/grant-a2",
			app("https://tailscale.com/cap/ingress"), "capability name must have the form {domain}/{path}", ""},
		{"no path", "docs (kb/1537 grants app capabilities: {domain}/{path})",
			app("example.com"), "capability name must have the form {domain}/{path}", ""},
		{"no domain", "docs (kb/1537)",
			app("cap/test"), "capability name must have the form {domain}/{path}", ""},
		{"tailscale.com relay-target", "captured grant_results/grant-a5",
			app("tailscale.com/cap/relay-target"), "capability name must not be in the tailscale.com domain", ""},
		{"tailscale.com funnel", "captured grant_results/grant-k10",
			app("tailscale.com/cap/funnel"), "capability name must not be in the tailscale.com domain", ""},
		{"tailscale.com drive is grantable", "captured grant_results/grant-a3",
			app("tailscale.com/cap/drive"), "", ""},
		{"tailscale.com kubernetes is grantable", "captured grant_results/grant-k1",
			app("tailscale.com/cap/kubernetes"), "", ""},
		{"own domain, deep path", "captured grant_results/grant-a4",
			app("example.com/a/b/c/d/e/f"), "", ""},
		{"neither ip nor app", "captured grant_results/grant-h8",
			`"grants": [{"src": ["*"], "dst": ["*"]}]`, "ip and app can not both be empty", ""},
		{"empty app", "captured grant_results/grant-h1",
			`"grants": [{"src": ["*"], "dst": ["*"], "app": {}}]`, "ip and app can not both be empty", ""},
	})
}

func TestPolicyIPEntries(t *testing.T) {
	ip := func(entries string) string {
		return `"grants": [{"src": ["*"], "dst": ["tag:server"], "ip": [` + entries + `]}]`
	}
	runPolicyCases(t, []policyCase{
		{"icmp without ports", "captured grant_results/grant-j7",
			ip(`"icmp"`), `port range "icmp": invalid first integer`, ""},
		{"port 0", "captured grant_results/grant-k23",
			ip(`"tcp:0"`), `port range "0": first port must be >0, or use '*' for wildcard`, ""},
		{"port above 65535", "inferred from grant-j7 (Tailscale parses ports as 16-bit)",
			ip(`"tcp:99999"`), `port range "99999": invalid first integer`, ""},
		{"unknown protocol", "docs (kb/1538 grants syntax: protocol name or IANA number)",
			ip(`"bogus:22"`), `unknown protocol "bogus": use a protocol name (tcp, udp, icmp, ...) or a number 0-255`, ""},
		{"icmp with wildcard", "captured grant_results/grant-j*",
			ip(`"icmp:*", "tcp:3389"`), "", ""},
		{"protocol number", "docs (kb/1538)", ip(`"6:22"`), "", ""},
		{"bare port, range, star", "captured grant_results (22, 80-443, *)", ip(`"22", "80-443", "*"`), "", ""},
	})
}

func TestPolicyDestinations(t *testing.T) {
	runPolicyCases(t, []policyCase{
		{"danger-all as dst", "captured grant_results/grant-k7",
			`"grants": [{"src": ["*"], "dst": ["autogroup:danger-all"], "ip": ["tcp:22"]}]`,
			"cannot use autogroup:danger-all as a dst", ""},
		{"danger-all as src is fine", "docs (kb/1396 targets: danger-all)",
			`"grants": [{"src": ["autogroup:danger-all"], "dst": ["tag:server"], "ip": ["tcp:443"]}]`, "", ""},
		{"app grant to the internet", "captured grant_results/grant-v01",
			`"grants": [{"src": ["*"], "dst": ["autogroup:internet"], "app": {"example.com/cap/internet-access": [{}]}}]`,
			"cannot use app grants with autogroup:internet", ""},
		{"app and ip grant to the internet", "captured grant_results/grant-v22",
			`"grants": [{"src": ["autogroup:member"], "dst": ["autogroup:internet"], "ip": ["tcp:443"], "app": {"example.com/cap/x": [{}]}}]`,
			"cannot use app grants with autogroup:internet", ""},
		{"ip grant to the internet is fine", "captured grant_results/grant-v*",
			`"grants": [{"src": ["*"], "dst": ["autogroup:internet"], "ip": ["tcp:443"]}]`, "", ""},
		{"0.0.0.0/0", "captured grant_results/grant-v08",
			`"grants": [{"src": ["*"], "dst": ["0.0.0.0/0"], "ip": ["tcp:80"]}]`,
			`dst "0.0.0.0/0": to allow all IP addresses, use "*" or "autogroup:internet"`, ""},
		{"via must be a tag", "captured grant_results/grant-i4",
			`"grants": [{"src": ["*"], "dst": ["10.0.0.0/8"], "ip": ["*"], "via": ["autogroup:tagged"]}]`,
			"via can only be a tag", ""},
		{"via tag undefined", "captured grant_results/grant-k30",
			`"grants": [{"src": ["*"], "dst": ["10.0.0.0/8"], "ip": ["*"], "via": ["tag:router", "tag:nonexistent"]}]`,
			`tag "tag:nonexistent" not found`, ""},
		{"src tag undefined", "captured grant_results/grant-h7",
			`"grants": [{"src": ["tag:nonexistent"], "dst": ["*"], "ip": ["*"]}]`,
			`src=tag not found: "tag:nonexistent"`, ""},
		{"acl dst tag undefined", "captured acl_results/acl-err05",
			`"acls": [{"action": "accept", "src": ["*"], "dst": ["tag:nonexistent:22"]}]`,
			`dst="tag:nonexistent": tag not found: "tag:nonexistent"`, ""},
		{"acl deny action", "captured acl_results/acl-err06",
			`"acls": [{"action": "deny", "src": ["tag:client"], "dst": ["tag:server:22"]}]`,
			`action="deny" is not supported`, ""},
		{"acl named port", "captured acl_results/acl-err07",
			`"acls": [{"action": "accept", "src": ["*"], "dst": ["tag:server:ssh"]}]`,
			`dst="tag:server:ssh": port range "ssh": invalid first integer`, ""},
		{"empty src array", "captured grant_results/grant-h4",
			`"grants": [{"src": [], "dst": ["*"], "app": {"example.com/cap/test": [{}]}}]`, "", ""},
		{"empty dst array", "captured grant_results/grant-h5",
			`"grants": [{"src": ["*"], "dst": [], "app": {"example.com/cap/test": [{}]}}]`, "", ""},
		{"user wildcard src", "captured grant_results/grant-k20",
			`"grants": [{"src": ["user:*@example.com"], "dst": ["tag:server"], "ip": ["tcp:22"]}]`, "", ""},
		{"user wildcard dst", "captured grant_results/grant-k21",
			`"grants": [{"src": ["*"], "dst": ["user:*@example.com"], "ip": ["tcp:22"]}]`, "", ""},
		{"user wildcard with no domain", "captured ssh_results/ssh-malformed-user-localpart-multi-glob (same check)",
			`"grants": [{"src": ["user:*@*"], "dst": ["tag:server"], "ip": ["tcp:22"]}]`,
			"* is not associated with this Tailnet and cannot be used in user:*@<domain> expressions", ""},
		{"recursive group", "captured ssh_results/ssh-group-nested-two-deep",
			`"groups": {"group:outer": ["group:inner"], "group:inner": ["alice@example.com"]}`,
			`groups["group:outer"]: "group:inner": group members cannot be recursive`, ""},
		{"tag not starting with a letter", "captured ssh_results/ssh-unicode-cyrillic-tag",
			`"tagOwners": {"tag:9lives": ["autogroup:admin"]}`,
			`tagOwners["tag:9lives"]: tag names must start with a letter, after 'tag:'`, ""},
	})
}

func TestPolicyNodeAttrs(t *testing.T) {
	attr := func(target string) string {
		return `"nodeAttrs": [{"target": ["` + target + `"], "attr": ["randomize-client-port"]}]`
	}
	runPolicyCases(t, []policyCase{
		{"not an address", "captured nodeattrs_results/nodeattrs-error-e2-bad-target",
			attr("%bogus%"), `"%bogus%": invalid address`, ""},
		{"undefined tag", "captured nodeattrs_results/nodeattrs-error-e6-tag-not-defined",
			attr("tag:undefined-tag"), `tag not found: "tag:undefined-tag"`, ""},
		{"autogroup:self is a server error", "captured nodeattrs_results/nodeattrs-error-e3-autogroup-self (500)",
			attr("autogroup:self"), "internal server error", ""},
		{"reserved ip pool", "captured nodeattrs_results/nodeattrs-error-e4-reserved-ippool",
			`"nodeAttrs": [{"target": ["autogroup:admin"], "ipPool": ["100.100.100.0/24"]}]`,
			"IPPool(100.100.100.0/24): network within reserved range", ""},
		{"host alias", "captured nodeattrs_results/nodeattrs-target-a8-host", attr("webserver"), "", ""},
		{"prefix", "captured nodeattrs_results/nodeattrs-target-a9-prefix", attr("100.64.0.10/32"), "", ""},
		{"empty target", "captured nodeattrs_results/nodeattrs-error-e5-empty-target-array",
			`"nodeAttrs": [{"target": [], "attr": ["funnel"]}]`, "", ""},
	})
}

func TestPolicySSHRules(t *testing.T) {
	rule := func(fields string) string {
		return `"ssh": [{` + fields + `}]`
	}
	runPolicyCases(t, []policyCase{
		{"no action", "captured ssh_results/ssh-malformed-action-missing",
			rule(`"src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]`), "action must be specified", ""},
		{"deny action", "captured ssh_results/ssh-malformed-action-deny",
			rule(`"action": "deny", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]`), `"deny" is not a valid action`, ""},
		{"action case", "captured ssh_results/ssh-malformed-action-mixedcase",
			rule(`"action": "Accept", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]`), `"Accept" is not a valid action`, ""},
		{"action whitespace is fine", "captured ssh_results/ssh-malformed-action-whitespace (accepted)",
			rule(`"action": " accept", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]`), "", ""},
		{"no users", "captured ssh_results/ssh-malformed-users-missing",
			rule(`"action": "accept", "src": ["autogroup:member"], "dst": ["tag:server"]`), "users must be specified", ""},
		{"empty user", "captured ssh_results/ssh-malformed-users-mixed-valid-empty",
			rule(`"action": "accept", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root", ""]`), `user "" is not valid`, ""},
		{"wildcard user", "captured ssh_results/ssh-malformed-user-wildcard",
			rule(`"action": "accept", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["*"]`), `user "*" is not valid`, ""},
		{"check period not a duration", "captured ssh_results/ssh-malformed-checkperiod-malformed",
			rule(`"action": "check", "checkPeriod": "abc", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]`), `time: invalid duration "abc"`, ""},
		{"check period negative", "captured ssh_results/ssh-malformed-checkperiod-negative",
			rule(`"action": "check", "checkPeriod": "-1m", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]`), "checkPeriod -1m0s must be a positive duration", ""},
		{"check period above a week", "captured ssh_results/ssh-malformed-checkperiod-over-max-by-1s",
			rule(`"action": "check", "checkPeriod": "168h0m1s", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]`), "checkPeriod 168h0m1s is above the max (168h)", ""},
		{"check period of a week", "captured ssh_results/ssh-malformed-checkperiod-exact-max (accepted)",
			rule(`"action": "check", "checkPeriod": "168h", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]`), "", ""},
		{"check period always", "captured ssh_results (checkPeriod always, accepted)",
			rule(`"action": "check", "checkPeriod": "always", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["root"]`), "", ""},
		{"empty acceptEnv", "captured ssh_results/ssh-malformed-acceptenv-empty",
			rule(`"action": "accept", "acceptEnv": [""], "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]`), "acceptEnv values cannot be empty", ""},
		{"host alias dst", "captured ssh_results/ssh-hosts-as-dst-single-ip",
			rule(`"action": "accept", "src": ["alice@example.com"], "dst": ["webserver"], "users": ["root"]`), `invalid dst "webserver"`, ""},
		{"user wildcard src of a domain", "captured ssh_results/ssh-b4 (domain check)",
			rule(`"action": "accept", "src": ["user:*@*"], "dst": ["tag:server"], "users": ["root"]`),
			"[ssh] * is not associated with this Tailnet and cannot be used in user:*@<domain> expressions", ""},
		{"autogroup:self src", "captured acl-err02/grant-h10 (same src rule)",
			rule(`"action": "accept", "src": ["autogroup:self"], "dst": ["tag:server"], "users": ["root"]`), `"autogroup:self" not valid on the src side of a rule`, ""},
		{"tag to user-owned devices", "docs (kb/1193 Tailscale SSH: tags cannot reach user devices)",
			rule(`"action": "accept", "src": ["tag:client"], "dst": ["autogroup:self"], "users": ["root"]`),
			`dst "autogroup:self": tagged sources cannot SSH into user-owned devices; use tags as destinations`, ""},
		{"user dst from another user", "docs (kb/1193: a user dst needs that user as the only src)",
			rule(`"action": "accept", "src": ["bob@example.com"], "dst": ["alice@example.com"], "users": ["root"]`),
			`dst "alice@example.com": a user destination needs that same user as the only src; use autogroup:self for users' own devices`, ""},
		{"user dst from that user", "captured ssh_results (dst thor from thor, accepted)",
			rule(`"action": "accept", "src": ["alice@example.com"], "dst": ["alice@example.com"], "users": ["root"]`), "", ""},
		{"tag to tag", "captured ssh_results (tag:prod to tag:server, accepted)",
			rule(`"action": "accept", "src": ["tag:client"], "dst": ["tag:server"], "users": ["root"]`), "", ""},
		{"default policy's rule", "Tailscale's default policy",
			rule(`"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["autogroup:nonroot", "root"]`), "", ""},
	})
}

func TestPolicyTests(t *testing.T) {
	grants := `"grants": [
		{"src": ["group:dev"], "dst": ["webserver"], "ip": ["tcp:80", "tcp:443"]},
		{"src": ["tag:client"], "dst": ["tag:server"], "ip": ["22"]},
		{"src": ["autogroup:member"], "dst": ["autogroup:self"], "ip": ["*"]},
		{"src": ["*"], "dst": ["internal"], "ip": ["udp:53"]},
	],`
	runPolicyCases(t, []policyCase{
		{"all pass", "captured policytest_results/policytest-allpass-*",
			grants + `"tests": [
				{"src": "alice@example.com", "accept": ["webserver:80", "100.64.0.16:443", "alice@example.com:22"], "deny": ["webserver:22", "bob@example.com:22"]},
				{"src": "tag:client", "accept": ["tag:server:22"], "deny": ["tag:server:80"]},
				{"src": "group:dev", "accept": ["webserver:443"]},
				{"src": "tag:client", "proto": "udp", "accept": ["10.1.2.3:53"], "deny": ["10.1.2.3:54"]},
			]`, "", ""},
		{"accept fails", "docs (API: address \"2.2.2.2:22\": want: Accept, got: Drop)",
			grants + `"tests": [{"src": "bob@example.com", "accept": ["webserver:22"]}]`,
			"test(s) failed", `bob@example.com: address "webserver:22": want: Accept, got: Drop`},
		{"deny fails", "docs (API: want: Drop, got: Accept)",
			grants + `"tests": [{"src": "tag:client", "deny": ["tag:server:22"]}]`,
			"test(s) failed", `address "tag:server:22": want: Drop, got: Accept`},
		{"wrong protocol", "captured policytest_results/policytest-accept-fail-proto-mismatch-tcp-vs-udp",
			grants + `"tests": [{"src": "alice@example.com", "proto": "udp", "accept": ["webserver:80"]}]`,
			"test(s) failed", "want: Accept, got: Drop"},
		{"autogroup:self with a tag src", "captured policytest_results/policytest-dst-unknown-autogroup-self-with-tag-src",
			grants + `"tests": [{"src": "tag:client", "accept": ["autogroup:self:22"]}]`, "test(s) failed", "autogroup:self"},
		{"unknown dst tag", "captured policytest_results/policytest-dst-unknown-tag",
			`"grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}], "tests": [{"src": "alice@example.com", "accept": ["tag:phantom:22"]}]`,
			"test(s) failed", `unknown host "tag:phantom"`},
		{"unknown src group", "captured policytest_results/policytest-src-unknown-group",
			grants + `"tests": [{"src": "group:phantom", "accept": ["tag:server:22"]}]`, "test(s) failed", "group:phantom"},
		{"port out of range", "captured policytest_results/policytest-malformed-test-port-out-of-range",
			grants + `"tests": [{"src": "alice@example.com", "accept": ["webserver:99999"]}]`, "test(s) failed", "99999"},
		{"no accept or deny", "captured policytest_results/policytest-malformed-test-missing-accept-and-deny",
			grants + `"tests": [{"src": "alice@example.com"}]`, "test(s) failed", "accept"},
		{"no src", "captured policytest_results/policytest-malformed-test-missing-src",
			grants + `"tests": [{"accept": ["tag:server:22"]}]`, "test(s) failed", "src is required"},
	})
}

func TestPolicySSHTests(t *testing.T) {
	ssh := `"ssh": [
		{"action": "accept", "src": ["alice@example.com"], "dst": ["tag:server"], "users": ["root"]},
		{"action": "check", "checkPeriod": "12h", "src": ["group:dev"], "dst": ["tag:server"], "users": ["autogroup:nonroot"]},
		{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["localpart:*@example.com"]},
	],`
	runPolicyCases(t, []policyCase{
		{"all pass", "captured sshtest_results/sshtest-allpass-*, -action-check-treated-as-allowed",
			ssh + `"sshTests": [
				{"src": "alice@example.com", "dst": ["tag:server"], "accept": ["root", "ubuntu"], "check": ["ubuntu"]},
				{"src": "bob@example.com", "dst": ["tag:server"], "check": ["deploy"], "deny": ["root"]},
				{"src": "alice@example.com", "dst": ["alice@example.com"], "accept": ["alice"], "deny": ["bob", "root"]},
				{"src": "bob@example.com", "dst": ["alice@example.com"], "deny": ["bob"]},
			]`, "", ""},
		{"accept fails: no rule", "captured sshtest_results/sshtest-accept-fail-no-ssh-rule",
			ssh + `"sshTests": [{"src": "carol@example.org", "dst": ["tag:server"], "accept": ["root"]}]`,
			"test(s) failed", `carol@example.org: login "root" to "tag:server": want: Accept, got: Drop`},
		{"nonroot blocks root", "captured sshtest_results/sshtest-user-nonroot-blocks-root",
			ssh + `"sshTests": [{"src": "bob@example.com", "dst": ["tag:server"], "accept": ["root"]}]`,
			"test(s) failed", "want: Accept, got: Drop"},
		{"deny fails", "captured sshtest_results/sshtest-deny-fail-policy-allows",
			ssh + `"sshTests": [{"src": "alice@example.com", "dst": ["tag:server"], "deny": ["root"]}]`,
			"test(s) failed", "want: Drop, got: Accept"},
		{"check wants a check rule", "docs (kb/1337 sshTests: check asserts check mode)",
			ssh + `"sshTests": [{"src": "alice@example.com", "dst": ["tag:server"], "check": ["root"]}]`,
			"test(s) failed", "want: Check, got: Accept"},
		{"localpart domain mismatch", "captured sshtest_results/sshtest-user-localpart-domain-mismatch",
			ssh + `"sshTests": [{"src": "carol@example.org", "dst": ["carol@example.org"], "accept": ["carol"]}]`,
			"test(s) failed", "want: Accept, got: Drop"},
		{"no assertions", "captured sshtest_results/sshtest-malformed-empty-accept-and-deny",
			ssh + `"sshTests": [{"src": "alice@example.com", "dst": ["tag:server"]}]`, "test(s) failed", "accept"},
		{"empty login user", "captured sshtest_results/sshtest-malformed-empty-user",
			ssh + `"sshTests": [{"src": "alice@example.com", "dst": ["tag:server"], "accept": [""]}]`, "test(s) failed", "empty login user"},
		{"internet dst", "captured sshtest_results/sshtest-malformed-dst-autogroup-internet",
			ssh + `"sshTests": [{"src": "alice@example.com", "dst": ["autogroup:internet"], "accept": ["root"]}]`,
			`SSH tests dst contains disallowed element "autogroup:internet"`, ""},
		{"CIDR dst", "captured sshtest_results/sshtest-malformed-dst-cidr",
			ssh + `"sshTests": [{"src": "alice@example.com", "dst": ["100.64.0.0/24"], "accept": ["root"]}]`,
			`SSH tests dst contains disallowed element "100.64.0.0/24"`, ""},
		{"dst with a port", "captured sshtest_results/sshtest-malformed-dst-with-port",
			ssh + `"sshTests": [{"src": "alice@example.com", "dst": ["tag:server:22"], "accept": ["root"]}]`,
			`SSH tests dst contains unknown tag "tag:server:22"`, ""},
	})
}

// TestRefusedPolicyWritesAnswerTheSameMessage checks the write path with
// a few of the cases above: the same message, 400 (500 where Tailscale
// answers 500), and the stored policy unchanged.
func TestRefusedPolicyWritesAnswerTheSameMessage(t *testing.T) {
	r := newRig(t)
	cases := []struct {
		body, want string
		status     int
	}{
		{`"grants": [{"src": ["*"], "dst": ["autogroup:self"], "ip": ["*"]}]`, "autogroup:self can only be used with users, groups, or supported autogroups", 400},
		{`"ssh": [{"action": "check", "checkPeriod": "200h", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]}]`, "checkPeriod 200h0m0s is above the max (168h)", 400},
		{`"grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}], "sshTests": [{"src": "alice@example.com", "dst": ["tag:server"], "accept": ["root"]}]`, "test(s) failed", 400},
		{`"nodeAttrs": [{"target": ["autogroup:self"], "attr": ["funnel"]}]`, "internal server error", 500},
	}
	before := string(r.api.Policy())
	for _, tc := range cases {
		resp, body := r.do(t, "POST", "/api/v2/tailnet/-/acl", "{"+policyBase+tc.body+"}", nil)
		if resp.StatusCode != tc.status || message(t, body) != tc.want {
			t.Errorf("%s: %d %s, want %d %q", tc.body, resp.StatusCode, body, tc.status, tc.want)
		}
	}
	if string(r.api.Policy()) != before {
		t.Fatal("a refused write changed the policy")
	}
}
