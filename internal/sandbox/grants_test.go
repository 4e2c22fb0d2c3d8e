package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

// Two environments, as tailgate writes them: each runner tag reaches its
// own targets on one port, and environment a also reaches the demo app
// behind the subnet router.
const twoEnvPolicy = `{
	"tagOwners": {
		"tag:tailgate-a": ["autogroup:admin"],
		"tag:tailgate-b": ["autogroup:admin"],
		"tag:svc-a":      ["autogroup:admin"],
		"tag:svc-b":      ["autogroup:admin"],
	},
	"grants": [
		{"src": ["tag:tailgate-a"], "dst": ["tag:svc-a"], "ip": ["tcp:80"]},
		{"src": ["tag:tailgate-b"], "dst": ["tag:svc-b"], "ip": ["tcp:80"]},
		{"src": ["tag:tailgate-a"], "dst": ["192.0.2.10"], "ip": ["tcp:80"]},
	],
}`

// enforcingSandbox starts a sandbox of the test's own, whose policy the
// test may change, and writes policy through the official API client.
func enforcingSandbox(t *testing.T, policy string) *sandbox.Sandbox {
	t.Helper()
	sb := sandboxtest.Start(t)
	if policy != "" {
		setPolicy(t, sb, policy)
	}
	return sb
}

func setPolicy(t *testing.T, sb *sandbox.Sandbox, policy string) {
	t.Helper()
	if err := apiClient(t, sb).PolicyFile().Set(ctxT(t), policy, ""); err != nil {
		t.Fatalf("write policy: %v", err)
	}
}

// serveHTTP serves a small page on each port of n's tailnet address.
func serveHTTP(t *testing.T, n *tailnet.Node, ports ...int) {
	t.Helper()
	for _, p := range ports {
		ln, err := n.Server().Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s:%d", n.Hostname(), p)
		}), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
}

// peerNames lists the hostnames n has in its netmap.
func peerNames(t *testing.T, n *tailnet.Node) []string {
	t.Helper()
	st, err := n.LocalClient().Status(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range st.Peer {
		out = append(out, p.HostName)
	}
	sort.Strings(out)
	return out
}

// waitPeers waits until n's peers are exactly want (sorted).
func waitPeers(t *testing.T, n *tailnet.Node, want ...string) {
	t.Helper()
	sort.Strings(want)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := peerNames(t, n)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's peers = %q, want %q", n.Hostname(), got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reach fetches http://dst/ through n.
func reach(ctx context.Context, n *tailnet.Node, dst netip.AddrPort) error {
	_, _, err := get(ctx, n, "http://"+dst.String()+"/")
	return err
}

// mustReach waits (a path may take a moment to warm up) until n reaches dst.
func mustReach(t *testing.T, n *tailnet.Node, dst netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(ctxT(t), 3*time.Second)
		err := reach(ctx, n, dst)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s cannot reach %v: %v", n.Hostname(), dst, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mustNotReach checks that n gets no answer from dst. A packet filter
// drops silently, so an attempt ends with its own short timeout.
func mustNotReach(t *testing.T, n *tailnet.Node, dst netip.AddrPort) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxT(t), 2*time.Second)
	defer cancel()
	if err := reach(ctx, n, dst); err == nil {
		t.Errorf("%s reaches %v, which the policy does not grant", n.Hostname(), dst)
	}
}

// mustNotRoute checks that dst is not even routed through the tailnet
// from n: the node that serves it is not n's peer.
func mustNotRoute(t *testing.T, n *tailnet.Node, dst netip.AddrPort) {
	t.Helper()
	_, err := n.DialTCP(ctxT(t), dst)
	var nr *tailnet.NotRoutedError
	if !errors.As(err, &nr) {
		t.Errorf("%s dialling %v: err = %v, want NotRoutedError (not a peer)", n.Hostname(), dst, err)
	}
}

func TestGrantsIsolateEnvironments(t *testing.T) {
	sb := enforcingSandbox(t, twoEnvPolicy)
	targetA := newNode(t, sb, sandbox.NodeOptions{Hostname: "target-a", Tags: []string{"tag:svc-a"}})
	targetB := newNode(t, sb, sandbox.NodeOptions{Hostname: "target-b", Tags: []string{"tag:svc-b"}})
	serveHTTP(t, targetA, 80, 81)
	serveHTTP(t, targetB, 80)
	runnerA1 := newNode(t, sb, sandbox.NodeOptions{Hostname: "runner-a1", Tags: []string{"tag:tailgate-a"}, AcceptRoutes: true})
	runnerA2 := newNode(t, sb, sandbox.NodeOptions{Hostname: "runner-a2", Tags: []string{"tag:tailgate-a"}, AcceptRoutes: true})
	runnerB := newNode(t, sb, sandbox.NodeOptions{Hostname: "runner-b", Tags: []string{"tag:tailgate-b"}, AcceptRoutes: true})
	port := func(n *tailnet.Node, p uint16) netip.AddrPort { return netip.AddrPortFrom(n.IPv4(), p) }

	// Runners see their targets (and the router serving their granted
	// subnet address), never another runner, of theirs or another
	// environment.
	waitPeers(t, runnerA1, "target-a", sandbox.RouterName)
	waitPeers(t, runnerA2, "target-a", sandbox.RouterName)
	waitPeers(t, runnerB, "target-b")
	waitPeers(t, targetA, "runner-a1", "runner-a2")
	waitPeers(t, targetB, "runner-b")

	t.Run("granted port is reachable", func(t *testing.T) {
		mustReach(t, runnerA1, port(targetA, 80))
		mustReach(t, runnerA2, port(targetA, 80))
		mustReach(t, runnerB, port(targetB, 80))
		mustReach(t, runnerA1, netip.AddrPortFrom(sandbox.DemoAppIP, 80))
	})
	t.Run("another port of the same target is refused", func(t *testing.T) {
		mustNotReach(t, runnerA1, port(targetA, 81))
		mustNotReach(t, runnerA1, netip.AddrPortFrom(sandbox.DemoAppIP, 443))
	})
	t.Run("environments cannot reach each other", func(t *testing.T) {
		mustNotRoute(t, runnerA1, port(targetB, 80))
		mustNotRoute(t, runnerB, port(targetA, 80))
		mustNotRoute(t, runnerA1, port(runnerB, 80))
		mustNotRoute(t, runnerB, netip.AddrPortFrom(sandbox.DemoAppIP, 80))
	})
	t.Run("runners of one environment cannot reach each other", func(t *testing.T) {
		serveHTTP(t, runnerA2, 80)
		mustNotRoute(t, runnerA1, port(runnerA2, 80))
	})
	t.Run("a target cannot reach back", func(t *testing.T) {
		// target-a has runner-a1 as a peer (the runner reaches it), but
		// its packets to the runner are not let in.
		serveHTTP(t, runnerA1, 80)
		mustNotReach(t, targetA, port(runnerA1, 80))
	})
}

func TestNodeOutsideAnyGrantSeesNoPeers(t *testing.T) {
	sb := enforcingSandbox(t, twoEnvPolicy)
	newNode(t, sb, sandbox.NodeOptions{Hostname: "target-a", Tags: []string{"tag:svc-a"}})
	stranger := newNode(t, sb, sandbox.NodeOptions{Hostname: "stranger", AcceptRoutes: true})
	otherTag := newNode(t, sb, sandbox.NodeOptions{Hostname: "other-tag", Tags: []string{"tag:svc-b"}})
	// Let the map of a node that should see peers arrive first, so that
	// an empty list below is the policy's doing, not a map still on its way.
	runner := newNode(t, sb, sandbox.NodeOptions{Hostname: "runner-a", Tags: []string{"tag:tailgate-a"}})
	waitPeers(t, runner, "target-a", sandbox.RouterName)

	for _, n := range []*tailnet.Node{stranger, otherTag} {
		if got := peerNames(t, n); len(got) != 0 {
			t.Errorf("%s, in no grant, sees peers %q", n.Hostname(), got)
		}
	}
	mustNotRoute(t, stranger, netip.AddrPortFrom(sb.Device().IPv4(), 80))
	mustNotRoute(t, stranger, netip.AddrPortFrom(sandbox.DemoAppIP, 80))
}

func TestPolicyChangeReachesRunningNodes(t *testing.T) {
	sb := enforcingSandbox(t, twoEnvPolicy)
	target := newNode(t, sb, sandbox.NodeOptions{Hostname: "target-a", Tags: []string{"tag:svc-a"}})
	serveHTTP(t, target, 80, 81)
	runner := newNode(t, sb, sandbox.NodeOptions{Hostname: "runner-a", Tags: []string{"tag:tailgate-a"}})
	web := netip.AddrPortFrom(target.IPv4(), 80)
	alt := netip.AddrPortFrom(target.IPv4(), 81)
	mustReach(t, runner, web)
	mustNotReach(t, runner, alt)

	// The grant moves from port 80 to port 81.
	setPolicy(t, sb, `{
		"tagOwners": {"tag:tailgate-a": ["autogroup:admin"], "tag:svc-a": ["autogroup:admin"]},
		"grants": [{"src": ["tag:tailgate-a"], "dst": ["tag:svc-a"], "ip": ["tcp:81"]}],
	}`)
	mustReach(t, runner, alt)
	mustNotReach(t, runner, web)

	// The grant goes: the target is no longer even a peer.
	setPolicy(t, sb, `{"tagOwners": {"tag:tailgate-a": ["autogroup:admin"], "tag:svc-a": ["autogroup:admin"]}}`)
	waitPeers(t, runner)
	waitPeers(t, target)
	mustNotRoute(t, runner, alt)
}

// TestBadPoliciesGrantNothing: a policy the sandbox cannot apply, or a
// rule that selects nothing, gives no access, never all access. Each bad
// policy follows an allow-all one, so that losing the peer proves the
// change arrived.
func TestBadPoliciesGrantNothing(t *testing.T) {
	const allowAll = `{"tagOwners": {"tag:x": ["autogroup:admin"]}, "grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}]}`
	sb := enforcingSandbox(t, allowAll)
	target := newNode(t, sb, sandbox.NodeOptions{Hostname: "target", Tags: []string{"tag:x"}})
	serveHTTP(t, target, 80)
	// tag:nobody is in no tagOwners: Tailscale would never have let the
	// node take it, and the policy below may not name it.
	runner := newNode(t, sb, sandbox.NodeOptions{Hostname: "runner", Tags: []string{"tag:nobody"}})
	web := netip.AddrPortFrom(target.IPv4(), 80)

	for _, tc := range []struct{ name, policy string }{
		{"grant with empty src", `{"grants": [{"src": [], "dst": ["*"], "ip": ["*"]}]}`},
		{"grant with empty dst", `{"grants": [{"src": ["*"], "dst": [], "ip": ["*"]}]}`},
		{"grant to a tag nobody owns", `{"tagOwners": {"tag:x": ["autogroup:admin"]}, "grants": [{"src": ["tag:nobody"], "dst": ["tag:x"], "ip": ["*"]}]}`},
		{"grant through a router (via is not modelled)", `{"tagOwners": {"tag:x": ["autogroup:admin"]}, "grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"], "via": ["tag:x"]}]}`},
		{"policy that does not parse", `{"grants": [`},
		{"empty policy", `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setPolicy(t, sb, allowAll)
			waitPeers(t, runner, "target", sandbox.RouterName, sandbox.DeviceName)
			mustReach(t, runner, web)

			// Seeded as a customer's file, without the API's validation,
			// which refuses some of these outright.
			sb.API().SetPolicy([]byte(tc.policy))
			waitPeers(t, runner)
			mustNotRoute(t, runner, web)
		})
	}

	t.Run("the API refuses an unknown tag and the old policy stays", func(t *testing.T) {
		setPolicy(t, sb, allowAll)
		err := apiClient(t, sb).PolicyFile().Set(ctxT(t), `{"grants": [{"src": ["tag:nobody"], "dst": ["*"], "ip": ["*"]}]}`, "")
		if err == nil {
			t.Fatal("policy naming an undefined tag was accepted")
		}
		waitPeers(t, runner, "target", sandbox.RouterName, sandbox.DeviceName)
		mustReach(t, runner, web)
	})
}

// TestAllowAllIgnoresThePolicy: Options.AllowAll is testcontrol's own
// behaviour, for tests that need every node to reach every other.
func TestAllowAllIgnoresThePolicy(t *testing.T) {
	sb, err := sandbox.Start(ctxT(t), sandbox.Options{AllowAll: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	setPolicy(t, sb, `{}`)
	a := newNode(t, sb, sandbox.NodeOptions{Hostname: "a"})
	b := newNode(t, sb, sandbox.NodeOptions{Hostname: "b"})
	serveHTTP(t, b, 80)
	mustReach(t, a, netip.AddrPortFrom(b.IPv4(), 80))
}
