package sandbox_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

// TestSandboxServesOnItsAddress starts a sandbox on 127.0.0.2, the way
// tailgate sandbox --listen binds an address other hosts reach: every
// URL and the DERP map name that address, and a node joins through it.
func TestSandboxServesOnItsAddress(t *testing.T) {
	addr := netip.MustParseAddr("127.0.0.2")
	sb, err := sandbox.Start(ctxT(t), sandbox.Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	for name, u := range map[string]string{"control": sb.ControlURL(), "API": sb.APIURL()} {
		if !strings.HasPrefix(u, "http://127.0.0.2:") {
			t.Errorf("%s URL %s is not on %v", name, u, addr)
		}
	}
	for _, r := range sb.Control().DERPMap.Regions {
		for _, n := range r.Nodes {
			if n.HostName != "127.0.0.2" || n.IPv4 != "127.0.0.2" || n.STUNTestIP != "127.0.0.2" {
				t.Errorf("DERP node %s advertises %s / %s / %s, want %v", n.Name, n.HostName, n.IPv4, n.STUNTestIP, addr)
			}
		}
	}
	n := newNode(t, sb, sandbox.NodeOptions{Hostname: "other-addr-client", AcceptRoutes: true})
	code, body, err := get(ctxT(t), n, "http://"+sandbox.DemoAppName+"/")
	if err != nil || code != 200 || !strings.Contains(body, sandbox.DemoAppText) {
		t.Fatalf("GET the demo app through a sandbox on %v: %d %v", addr, code, err)
	}
}

func TestSandboxRefusesAnAddressItCannotAdvertise(t *testing.T) {
	for _, a := range []string{"0.0.0.0", "::1"} {
		sb, err := sandbox.Start(ctxT(t), sandbox.Options{Addr: netip.MustParseAddr(a)})
		if err == nil {
			sb.Close()
			t.Errorf("Start on %s: no error", a)
		}
	}
}
