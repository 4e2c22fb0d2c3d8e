package tailnet

import (
	"net/netip"
	"slices"
	"testing"

	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"
	"tailscale.com/types/dnstype"
	"tailscale.com/types/key"
)

func TestLocalAnswerFromStatusAndDNSConfig(t *testing.T) {
	self := netip.MustParseAddr("100.64.0.1")
	peer := netip.MustParseAddr("100.64.0.2")
	peer6 := netip.MustParseAddr("fd7a:115c:a1e0::2")
	v := dnsView{
		status: &ipnstate.Status{
			Self: &ipnstate.PeerStatus{DNSName: "runner.tail1234.ts.net.", TailscaleIPs: []netip.Addr{self}},
			Peer: map[key.NodePublic]*ipnstate.PeerStatus{
				key.NewNode().Public(): {DNSName: "staging-box.tail1234.ts.net.", TailscaleIPs: []netip.Addr{peer, peer6}},
			},
		},
		dns: &tailcfg.DNSConfig{
			ExtraRecords: []tailcfg.DNSRecord{{Name: "db.tail1234.ts.net", Value: "100.64.0.7"}},
			Routes:       map[string][]*dnstype.Resolver{"internal.example": {{Addr: "192.0.2.53"}}},
		},
	}
	for name, want := range map[string][]netip.Addr{
		"runner.tail1234.ts.net.":      {self},
		"STAGING-BOX.tail1234.ts.net.": {peer, peer6},
		"db.tail1234.ts.net.":          {netip.MustParseAddr("100.64.0.7")},
		"app.internal.example.":        nil, // split DNS: asked of the zone's resolver, not answered here
		"elsewhere.example.":           nil,
	} {
		if got := v.localAnswer(name); !slices.Equal(got, want) {
			t.Errorf("localAnswer(%s) = %v, want %v", name, got, want)
		}
	}
	if got := splitDNSResolvers(v.dns, "app.internal.example."); len(got) != 1 || got[0] != netip.MustParseAddrPort("192.0.2.53:53") {
		t.Errorf("split DNS resolvers = %v", got)
	}
}
