package grants

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/target"
)

// testTailnet is a small tailnet: two app servers, a subnet router with one
// approved and one merely advertised route, an exit node, and two devices
// whose names share a first label only by hostname.
func testTailnet() TailnetView {
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	prefixes := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	return TailnetView{
		MagicDNSSuffix: "tail1234.ts.net",
		Devices: []Device{
			{ID: "n1", Name: "staging-box.tail1234.ts.net.", Hostname: "staging-box", Addresses: addrs("100.64.0.5", "fd7a:115c:a1e0::5")},
			{ID: "n2", Name: "app-2.tail1234.ts.net", Hostname: "app", Addresses: addrs("100.64.0.6")},
			{ID: "n3", Name: "router.tail1234.ts.net", Hostname: "router", Addresses: addrs("100.64.0.7"),
				AdvertisedRoutes: prefixes("10.20.0.0/16", "192.0.2.0/24"), EnabledRoutes: prefixes("10.20.0.0/16")},
			{ID: "n4", Name: "exit.tail1234.ts.net", Hostname: "exit", Addresses: addrs("100.64.0.8"),
				AdvertisedRoutes: prefixes("0.0.0.0/0", "::/0"), EnabledRoutes: prefixes("0.0.0.0/0", "::/0")},
			{ID: "n5", Name: "router-b.tail1234.ts.net", Hostname: "router-b", Addresses: addrs("100.64.0.9"),
				AdvertisedRoutes: prefixes("198.51.100.0/24"), EnabledRoutes: prefixes("198.51.100.0/24")},
			{ID: "n6", Name: "db-1.tail1234.ts.net", Hostname: "db", Addresses: addrs("100.64.0.10")},
			{ID: "n7", Name: "db-2.tail1234.ts.net", Hostname: "db", Addresses: addrs("100.64.0.11")},
		},
	}
}

func mustTargets(t *testing.T, ss ...string) []target.Target {
	t.Helper()
	ts, err := target.ParseList(ss)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestPlanGrantsEachTargetKindNarrowly(t *testing.T) {
	tests := []struct {
		name        string
		target      string
		wantKind    target.Kind
		wantDst     []string
		wantWarning string // substring; "" means no warning
	}{
		{"tailscale ip", "100.64.0.5:443", target.KindTailscaleIP, []string{"100.64.0.5"}, ""},
		{"tailscale ipv6", "[fd7a:115c:a1e0::5]:443", target.KindTailscaleIP, []string{"fd7a:115c:a1e0::5"}, ""},
		{"tailscale ip of no device", "100.64.9.9:443", target.KindTailscaleIP, []string{"100.64.9.9"}, "no device in the tailnet has the address"},
		{"device name", "staging-box:443", target.KindDeviceName, []string{"100.64.0.5", "fd7a:115c:a1e0::5"}, ""},
		{"device magicdns fqdn", "staging-box.tail1234.ts.net:443", target.KindDeviceName, []string{"100.64.0.5", "fd7a:115c:a1e0::5"}, ""},
		{"device by hostname when name differs", "app:8080", target.KindDeviceName, []string{"100.64.0.6"}, ""},
		{"device by first label of name", "app-2:8080", target.KindDeviceName, []string{"100.64.0.6"}, ""},
		{"private ip behind approved route", "10.20.0.15:443", target.KindPrivateIP, []string{"10.20.0.15"}, ""},
		{"private ip, route advertised not approved", "192.0.2.10:443", target.KindPrivateIP, []string{"192.0.2.10"}, "advertised by router.tail1234.ts.net but not approved"},
		{"private ip, no route at all", "172.16.5.5:443", target.KindPrivateIP, []string{"172.16.5.5"}, "no approved subnet route covers 172.16.5.5"},
		{"internal dns name", "staging.internal.example.com:443", target.KindDNSName, []string{"10.20.0.0/16", "198.51.100.0/24"}, "10.20.0.0/16, 198.51.100.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPlan("staging", mustTargets(t, tt.target), testTailnet())
			if err != nil {
				t.Fatalf("NewPlan: %v", err)
			}
			if p.Tag != "tag:tailgate-staging" {
				t.Errorf("Tag = %q", p.Tag)
			}
			if len(p.Grants) != 1 {
				t.Fatalf("Grants = %+v, want one", p.Grants)
			}
			g := p.Grants[0]
			port := strings.TrimPrefix(tt.target[strings.LastIndex(tt.target, ":"):], ":")
			want := Grant{Src: []string{"tag:tailgate-staging"}, Dst: tt.wantDst, IP: []string{"tcp:" + strings.TrimLeft(port, "0")}}
			if !reflect.DeepEqual(g, want) {
				t.Errorf("grant = %+v, want %+v", g, want)
			}
			if pt := p.Targets[0]; pt.Kind != tt.wantKind {
				t.Errorf("planned kind = %v, want %v", pt.Kind, tt.wantKind)
			}
			if len(p.CIDRs) != len(tt.wantDst) {
				t.Errorf("CIDRs = %v, want %d entries", p.CIDRs, len(tt.wantDst))
			}
			switch {
			case tt.wantWarning == "" && len(p.Warnings) > 0:
				t.Errorf("unexpected warnings %q", p.Warnings)
			case tt.wantWarning != "" && (len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], tt.wantWarning)):
				t.Errorf("warnings = %q, want one containing %q", p.Warnings, tt.wantWarning)
			case tt.wantWarning != "" && !strings.Contains(p.Targets[0].Warning, tt.wantWarning):
				t.Errorf("target warning = %q", p.Targets[0].Warning)
			}
		})
	}
}

func TestPlanDNSNameWarningSaysItIsBroader(t *testing.T) {
	p, err := NewPlan("staging", mustTargets(t, "staging.internal.example.com:443"), testTailnet())
	if err != nil {
		t.Fatal(err)
	}
	w := p.Warnings[0]
	for _, want := range []string{"staging.internal.example.com:443", "broader than this hostname", "IP or device name"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q does not say %q", w, want)
		}
	}
	for _, d := range p.Grants[0].Dst {
		if d == "0.0.0.0/0" || d == "::/0" {
			t.Errorf("exit node default route granted: %v", p.Grants[0].Dst)
		}
	}
}

func TestPlanRefusesWhatTheTailnetCannotServe(t *testing.T) {
	noRoutes := testTailnet()
	for i := range noRoutes.Devices {
		d := &noRoutes.Devices[i]
		if d.Hostname != "exit" { // exit node's default routes do not count
			d.EnabledRoutes = nil
		}
	}
	noSuffix := testTailnet()
	noSuffix.MagicDNSSuffix = ""
	tests := []struct {
		name        string
		env         string
		targets     []string
		tailnet     TailnetView
		wantTarget  string
		wantProblem string
	}{
		{"unknown device", "staging", []string{"nosuch-box:443"}, testTailnet(), "nosuch-box:443", `no device named "nosuch-box"`},
		{"unknown magicdns name", "staging", []string{"nosuch.tail1234.ts.net:443"}, testTailnet(), "nosuch.tail1234.ts.net:443", "no device named"},
		{"ambiguous hostname", "staging", []string{"db:5432"}, testTailnet(), "db:5432", "matches 2 devices"},
		{"other tailnet's magicdns", "staging", []string{"box.tail9999.ts.net:443"}, testTailnet(), "box.tail9999.ts.net:443", "another tailnet"},
		{"dns name without approved routes", "staging", []string{"staging.internal.example.com:443"}, noRoutes, "staging.internal.example.com:443", "has none"},
		{"unknown ts.net name, suffix unknown", "staging", []string{"box.tail9999.ts.net:443"}, noSuffix, "box.tail9999.ts.net:443", `no device named "box.tail9999.ts.net"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPlan(tt.env, mustTargets(t, tt.targets...), tt.tailnet)
			var te *target.Error
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want *target.Error", err)
			}
			if te.Target != tt.wantTarget || !strings.Contains(te.Problem, tt.wantProblem) {
				t.Errorf("got {%q, %q}, want %q / %q", te.Target, te.Problem, tt.wantTarget, tt.wantProblem)
			}
		})
	}
}

func TestPlanFindsMagicDNSNameWithoutSuffix(t *testing.T) {
	tn := testTailnet()
	tn.MagicDNSSuffix = ""
	p, err := NewPlan("staging", mustTargets(t, "staging-box.tail1234.ts.net:443"), tn)
	if err != nil {
		t.Fatal(err)
	}
	if p.Targets[0].Kind != target.KindDeviceName || p.Targets[0].DeviceID != "n1" {
		t.Errorf("planned %+v, want device n1", p.Targets[0])
	}
}

func TestPlanRefusesBadEnvName(t *testing.T) {
	for _, env := range []string{"", "Staging", "stag ing", "staging_1", "ä", strings.Repeat("a", 41), "tag:x", "a/b"} {
		_, err := NewPlan(env, mustTargets(t, "100.64.0.5:443"), testTailnet())
		var ee *EnvError
		if !errors.As(err, &ee) {
			t.Errorf("NewPlan(env %q) error = %v, want *EnvError", env, err)
		}
	}
	for _, env := range []string{"a", "prod", "staging-2", strings.Repeat("a", 40), "0"} {
		if !ValidEnvName(env) {
			t.Errorf("ValidEnvName(%q) = false", env)
		}
	}
}

func TestPlanGroupsByPortDeterministically(t *testing.T) {
	targets := mustTargets(t,
		"staging.internal.example.com:443", // routes on 443
		"10.20.0.15:8443",
		"staging-box:443",
		"100.64.0.6:80",
		"10.20.0.16:8443",
		"staging-box:8443",
		"10.20.0.15:443", // inside a route already granted on 443: deduplicated? no, a /32 is kept
	)
	p, err := NewPlan("staging", targets, testTailnet())
	if err != nil {
		t.Fatal(err)
	}
	want := []Grant{
		{Src: []string{"tag:tailgate-staging"}, Dst: []string{"100.64.0.6"}, IP: []string{"tcp:80"}},
		{Src: []string{"tag:tailgate-staging"}, Dst: []string{"10.20.0.0/16", "10.20.0.15", "100.64.0.5", "198.51.100.0/24", "fd7a:115c:a1e0::5"}, IP: []string{"tcp:443"}},
		{Src: []string{"tag:tailgate-staging"}, Dst: []string{"10.20.0.15", "10.20.0.16", "100.64.0.5", "fd7a:115c:a1e0::5"}, IP: []string{"tcp:8443"}},
	}
	if !reflect.DeepEqual(p.Grants, want) {
		t.Errorf("grants =\n%+v\nwant\n%+v", p.Grants, want)
	}
	wantCIDRs := []string{"10.20.0.0/16", "10.20.0.15/32", "10.20.0.16/32", "100.64.0.5/32", "100.64.0.6/32", "198.51.100.0/24", "fd7a:115c:a1e0::5/128"}
	var gotCIDRs []string
	for _, c := range p.CIDRs {
		gotCIDRs = append(gotCIDRs, c.String())
	}
	if !reflect.DeepEqual(gotCIDRs, wantCIDRs) {
		t.Errorf("CIDRs = %v, want %v", gotCIDRs, wantCIDRs)
	}
	if len(p.Targets) != len(targets) || p.Targets[0].Target.Host != "staging.internal.example.com" {
		t.Errorf("Targets not in input order: %+v", p.Targets)
	}
	for _, g := range p.Grants {
		for _, ip := range g.IP {
			if ip == "*" || !strings.HasPrefix(ip, "tcp:") {
				t.Errorf("grant port %q, want tcp:<port>", ip)
			}
		}
	}

	// Shuffled input, same plan grants: the policy diff does not churn.
	rev := append([]target.Target(nil), targets...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	p2, err := NewPlan("staging", rev, testTailnet())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p2.Grants, p.Grants) || !reflect.DeepEqual(p2.CIDRs, p.CIDRs) {
		t.Errorf("plan depends on target order")
	}
}

func TestPlanWarnsPerTargetNamingIt(t *testing.T) {
	p, err := NewPlan("staging", mustTargets(t, "staging.internal.example.com:443", "172.16.5.5:80", "172.16.5.5:81"), testTailnet())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 3 { // one per target: each names its target
		t.Errorf("warnings = %q", p.Warnings)
	}
}
