package peerfilter_test

import (
	"net/netip"
	"slices"
	"testing"

	"tailscale.com/tailcfg"
	"tailscale.com/types/ipproto"
	"tailscale.com/wgengine/filter"

	"github.com/tailgate-dev/tailgate/internal/sandbox/peerfilter"
	"github.com/tailgate-dev/tailgate/internal/tsapi/fake"
)

// A tailnet as tailgate leaves it: a router serving 192.0.2.0/24, a
// device, two runners of environment a, one of environment b, and an
// untagged laptop.
var devices = []fake.Device{
	{NodeID: "router", User: "admin@example.com", Addresses: []string{"100.64.0.1", "fd7a:115c:a1e0::1"}, EnabledRoutes: []string{"192.0.2.0/24"}},
	{NodeID: "device", User: "tagged-devices", Tags: []string{"tag:svc"}, Addresses: []string{"100.64.0.2"}},
	{NodeID: "a1", User: "tagged-devices", Tags: []string{"tag:tailgate-a"}, Addresses: []string{"100.64.0.3"}},
	{NodeID: "a2", User: "tagged-devices", Tags: []string{"tag:tailgate-a"}, Addresses: []string{"100.64.0.4"}},
	{NodeID: "b1", User: "tagged-devices", Tags: []string{"tag:tailgate-b"}, Addresses: []string{"100.64.0.5"}},
	{NodeID: "laptop", User: "alice@example.com", Addresses: []string{"100.64.0.6"}},
}

func view(t *testing.T, policy string) *peerfilter.View {
	t.Helper()
	rules, err := fake.AccessRules([]byte(policy), devices)
	if err != nil {
		t.Fatalf("AccessRules: %v", err)
	}
	var nodes []peerfilter.Node
	for _, d := range devices {
		n := peerfilter.Node{ID: tailcfg.StableNodeID(d.NodeID)}
		for _, a := range d.Addresses {
			ip := netip.MustParseAddr(a)
			n.Addresses = append(n.Addresses, netip.PrefixFrom(ip, ip.BitLen()))
		}
		for _, r := range d.EnabledRoutes {
			n.Routes = append(n.Routes, netip.MustParsePrefix(r))
		}
		nodes = append(nodes, n)
	}
	return peerfilter.Compute(nodes, rules)
}

// allows runs the node's filter the way tailscaled does.
func allows(t *testing.T, v *peerfilter.View, node, src, dst string, proto int, port uint16) bool {
	t.Helper()
	matches, err := filter.MatchesFromFilterRules(v.Filter(tailcfg.StableNodeID(node)))
	if err != nil {
		t.Fatalf("%s's filter does not parse: %v", node, err)
	}
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	for _, m := range matches {
		if !slices.ContainsFunc(m.IPProto.AsSlice(), func(p ipproto.Proto) bool { return int(p) == proto }) {
			continue
		}
		if !m.SrcsContains(s) {
			continue
		}
		for _, dp := range m.Dsts {
			if dp.Net.Contains(d) && dp.Ports.Contains(port) {
				return true
			}
		}
	}
	return false
}

const tailgatePolicy = `{
	"tagOwners": {"tag:tailgate-a": [], "tag:tailgate-b": [], "tag:svc": []},
	"grants": [
		{"src": ["tag:tailgate-a"], "dst": ["tag:svc"], "ip": ["tcp:443"]},
		{"src": ["tag:tailgate-a"], "dst": ["192.0.2.10"], "ip": ["tcp:80"]},
		{"src": ["tag:tailgate-b"], "dst": ["100.64.0.2"], "ip": ["udp:53"]},
	],
	"acls": [{"action": "accept", "src": ["alice@example.com"], "dst": ["tag:svc:22"]}],
}`

func TestRunnersSeeOnlyWhatTheyReach(t *testing.T) {
	v := view(t, tailgatePolicy)
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"a1", "device", true},
		{"a1", "router", true}, // serves 192.0.2.10
		{"a1", "a2", false},    // runners of one environment
		{"a1", "b1", false},
		{"b1", "device", true},
		{"b1", "router", false},
		{"laptop", "device", true},
		{"laptop", "a1", false},
		{"device", "router", false},
	} {
		if got := v.Peers(tailcfg.StableNodeID(tc.a), tailcfg.StableNodeID(tc.b)); got != tc.want {
			t.Errorf("Peers(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if v.Peers(tailcfg.StableNodeID(tc.b), tailcfg.StableNodeID(tc.a)) != v.Peers(tailcfg.StableNodeID(tc.a), tailcfg.StableNodeID(tc.b)) {
			t.Errorf("Peers(%s, %s) is not symmetric", tc.a, tc.b)
		}
	}
}

func TestFiltersLetInExactlyTheGrants(t *testing.T) {
	v := view(t, tailgatePolicy)
	const tcp, udp = 6, 17
	for _, tc := range []struct {
		node, src, dst string
		proto          int
		port           uint16
		want           bool
	}{
		{"device", "100.64.0.3", "100.64.0.2", tcp, 443, true},
		{"device", "100.64.0.4", "100.64.0.2", tcp, 443, true},
		{"device", "100.64.0.3", "100.64.0.2", tcp, 444, false},
		{"device", "100.64.0.3", "100.64.0.2", udp, 443, false},
		{"device", "100.64.0.5", "100.64.0.2", udp, 53, true},
		{"device", "100.64.0.5", "100.64.0.2", tcp, 53, false},
		{"device", "100.64.0.6", "100.64.0.2", tcp, 22, true},
		{"device", "100.64.0.5", "100.64.0.2", tcp, 22, false},
		{"router", "100.64.0.3", "192.0.2.10", tcp, 80, true},
		{"router", "100.64.0.3", "192.0.2.11", tcp, 80, false},
		{"router", "100.64.0.3", "192.0.2.10", tcp, 443, false},
		{"router", "100.64.0.5", "192.0.2.10", tcp, 80, false},
		{"a2", "100.64.0.3", "100.64.0.4", tcp, 443, false},
	} {
		if got := allows(t, v, tc.node, tc.src, tc.dst, tc.proto, tc.port); got != tc.want {
			t.Errorf("%s's filter, %s → %s:%d/%d = %v, want %v", tc.node, tc.src, tc.dst, tc.port, tc.proto, got, tc.want)
		}
	}
}

func TestOddPoliciesGrantNothing(t *testing.T) {
	for name, policy := range map[string]string{
		"empty src":              `{"grants": [{"src": [], "dst": ["*"], "ip": ["*"]}]}`,
		"empty dst":              `{"grants": [{"src": ["*"], "dst": [], "ip": ["*"]}]}`,
		"no rules":               `{}`,
		"via a router":           `{"tagOwners": {"tag:svc": []}, "grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"], "via": ["tag:svc"]}]}`,
		"autogroup:internet":     `{"grants": [{"src": ["*"], "dst": ["autogroup:internet"], "ip": ["*"]}]}`,
		"a group with no member": `{"groups": {"group:none": []}, "grants": [{"src": ["group:none"], "dst": ["*"], "ip": ["*"]}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			v := view(t, policy)
			for _, d := range devices {
				id := tailcfg.StableNodeID(d.NodeID)
				if f := v.Filter(id); len(f) != 0 {
					t.Errorf("%s's filter = %+v, want none", d.NodeID, f)
				}
				for _, o := range devices {
					if o.NodeID != d.NodeID && v.Peers(id, tailcfg.StableNodeID(o.NodeID)) {
						t.Errorf("%s and %s are peers", d.NodeID, o.NodeID)
					}
				}
			}
		})
	}
	t.Run("invalid policy", func(t *testing.T) {
		// A tag missing from tagOwners: Tailscale refuses the file, and
		// an enforcing control server must not guess.
		rules, err := fake.AccessRules([]byte(`{"grants": [{"src": ["tag:nobody"], "dst": ["*"], "ip": ["*"]}]}`), devices)
		if err == nil || len(rules) != 0 {
			t.Fatalf("AccessRules = %v, %v; want an error and no rules", rules, err)
		}
	})
}

func TestAppGrantsBecomeCapabilities(t *testing.T) {
	v := view(t, `{"tagOwners": {"tag:svc": []}, "grants": [
		{"src": ["alice@example.com"], "dst": ["tag:svc"], "app": {"example.com/cap/mcp": [{"tools": ["echo"]}]}},
	]}`)
	f := v.Filter("device")
	if len(f) != 1 || len(f[0].CapGrant) != 1 || !slices.Equal(f[0].SrcIPs, []string{"100.64.0.6/32"}) {
		t.Fatalf("device's filter = %+v, want one capability grant from alice's laptop", f)
	}
	if got := f[0].CapGrant[0].CapMap["example.com/cap/mcp"]; len(got) != 1 || string(got[0]) != `{"tools": ["echo"]}` {
		t.Errorf("capability values = %q", got)
	}
	if v.Peers("laptop", "device") {
		t.Error("an app grant alone made laptop and device peers; it lets no packet through")
	}
}

func TestSelfGrantsStayWithTheUser(t *testing.T) {
	more := append(slices.Clone(devices), fake.Device{NodeID: "laptop2", User: "alice@example.com", Addresses: []string{"100.64.0.7"}},
		fake.Device{NodeID: "bobs", User: "bob@example.com", Addresses: []string{"100.64.0.8"}})
	rules, err := fake.AccessRules([]byte(`{"grants": [{"src": ["autogroup:member"], "dst": ["autogroup:self"], "ip": ["*"]}]}`), more)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []peerfilter.Node
	for _, d := range more {
		nodes = append(nodes, peerfilter.Node{ID: tailcfg.StableNodeID(d.NodeID), Addresses: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr(d.Addresses[0]), 32)}})
	}
	v := peerfilter.Compute(nodes, rules)
	if !v.Peers("laptop", "laptop2") {
		t.Error("alice's two devices are not peers")
	}
	if v.Peers("laptop", "bobs") || v.Peers("laptop", "a1") {
		t.Error("autogroup:self reached another user's or a tagged device")
	}
}
