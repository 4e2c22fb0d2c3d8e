package grants_test

import (
	"fmt"
	"net/netip"

	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailgate-dev/tailgate/internal/grants"
)

func ExampleNewPlan() {
	targets, err := target.ParseList([]string{"staging-box:443", "10.20.0.15:8443", "staging.internal.example.com:443"})
	if err != nil {
		fmt.Println(err)
		return
	}
	view := grants.TailnetView{
		MagicDNSSuffix: "tail1234.ts.net",
		Devices: []grants.Device{
			{ID: "n1", Name: "staging-box.tail1234.ts.net", Addresses: []netip.Addr{netip.MustParseAddr("100.64.0.5")}},
			{ID: "n2", Name: "router.tail1234.ts.net", Addresses: []netip.Addr{netip.MustParseAddr("100.64.0.7")},
				AdvertisedRoutes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")},
				EnabledRoutes:    []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}},
		},
	}
	plan, err := grants.NewPlan("staging", targets, view)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, g := range plan.Grants {
		fmt.Println(g.Src, g.Dst, g.IP)
	}
	fmt.Println("CIDRs:", plan.CIDRs)
	for _, w := range plan.Warnings {
		fmt.Println("warning:", w)
	}
	// Output:
	// [tag:tailgate-staging] [10.20.0.0/16 100.64.0.5] [tcp:443]
	// [tag:tailgate-staging] [10.20.0.15] [tcp:8443]
	// CIDRs: [10.20.0.0/16 10.20.0.15/32 100.64.0.5/32]
	// warning: staging.internal.example.com:443: a Tailscale policy cannot name a DNS host, so tailgate grants every approved subnet route (10.20.0.0/16), which is broader than this hostname; give an IP or device name for the narrowest grant
}

func ExampleFragment() {
	targets, _ := target.ParseList([]string{"100.64.0.5:443"})
	plan, _ := grants.NewPlan("staging", targets, grants.TailnetView{})
	fmt.Print(grants.Fragment(plan))
	// Output:
	// // tailgate: entries for environment "staging". Merge them into the sections of the
	// // same name in your tailnet policy file (create a section if you have none).
	// "tagOwners": {
	// 	// tailgate:staging managed by tailgate; do not edit
	// 	"tag:tailgate-staging": ["autogroup:admin"],
	// },
	// "grants": [
	// 	// tailgate:staging managed by tailgate; do not edit
	// 	{"src": ["tag:tailgate-staging"], "dst": ["100.64.0.5"], "ip": ["tcp:443"]},
	// ],
}
