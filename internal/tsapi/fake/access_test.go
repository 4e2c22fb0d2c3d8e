package fake_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/tsapi/fake"
)

// rulesText renders rules compactly: "src>dst:proto/first-last".
func rulesText(rules []fake.AccessRule) []string {
	var out []string
	for _, r := range rules {
		for _, p := range r.Ports {
			out = append(out, fmt.Sprintf("%v>%v:%d/%d-%d", r.Src, r.Dst, p.Proto, p.First, p.Last))
		}
	}
	return out
}

func TestAccessRulesResolveSelectorsToDevices(t *testing.T) {
	devices := []fake.Device{
		{NodeID: "n1", User: "alice@example.com", Addresses: []string{"100.64.0.1"}},
		{NodeID: "n2", User: "bob@example.com", Addresses: []string{"100.64.0.2"}},
		{NodeID: "n3", User: "tagged-devices", Tags: []string{"tag:db"}, Addresses: []string{"100.64.0.3"}},
	}
	for _, tc := range []struct{ name, policy, want string }{
		{"group to tag", `{"groups": {"group:eng": ["alice@example.com"]}, "tagOwners": {"tag:db": []},
			"grants": [{"src": ["group:eng"], "dst": ["tag:db"], "ip": ["tcp:5432"]}]}`,
			"[[100.64.0.1/32]>[100.64.0.3/32]:6/5432-5432]"},
		{"hosts alias and CIDR", `{"hosts": {"office": "192.0.2.0/24"},
			"grants": [{"src": ["10.0.0.0/8"], "dst": ["office"], "ip": ["80-81"]}]}`,
			"[[10.0.0.0/8]>[192.0.2.0/24]:-1/80-81]"},
		{"acl with proto", `{"acls": [{"action": "accept", "src": ["bob@example.com"], "proto": "udp", "dst": ["100.64.0.1:53"]}]}`,
			"[[100.64.0.2/32]>[100.64.0.1/32]:17/53-53]"},
		{"members only, not tagged devices", `{"grants": [{"src": ["autogroup:member"], "dst": ["autogroup:tagged"], "ip": ["22"]}]}`,
			"[[100.64.0.1/32 100.64.0.2/32]>[100.64.0.3/32]:-1/22-22]"},
		{"a user with no device", `{"grants": [{"src": ["carol@example.com"], "dst": ["*"], "ip": ["*"]}]}`, "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := fake.AccessRules([]byte(tc.policy), devices)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(rulesText(rules)); got != tc.want {
				t.Errorf("rules = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestAccessRulesOfTheDefaultPolicyAllowAll(t *testing.T) {
	api := fake.New(fake.Options{})
	rules, err := fake.AccessRules(api.Policy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	all := netip.MustParsePrefix("0.0.0.0/0")
	if len(rules) != 1 || rules[0].Src[0] != all || rules[0].Dst[0] != all || rules[0].Ports[0] != (fake.PortRange{Proto: fake.AnyProto, First: 0, Last: 65535}) {
		t.Fatalf("default policy rules = %+v, want one allow-all", rules)
	}
}
