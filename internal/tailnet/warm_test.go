package tailnet_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newNode joins a node that accepts the sandbox's subnet routes; it is
// closed when the test ends.
func newNode(t *testing.T, sb *sandbox.Sandbox, hostname string) *tailnet.Node {
	t.Helper()
	n, err := sb.NewNode(ctxT(t, time.Minute), sandbox.NodeOptions{Hostname: hostname, AcceptRoutes: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// A warmed path has its WireGuard session with the subnet router up
// already: the first connection to the app does not wait for a handshake
// (which, lost, would cost WireGuard's 5 s retry).
func TestWarmPathOpensTheWireGuardSession(t *testing.T) {
	sb := sandboxtest.Shared(t)
	ctx := ctxT(t, time.Minute)
	n := newNode(t, sb, "warm-session")

	if err := n.WarmPath(ctx, sandbox.DemoAppIP); err != nil {
		t.Fatalf("WarmPath(%v): %v", sandbox.DemoAppIP, err)
	}
	st, err := n.LocalClient().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	router := sb.Router().IPv4()
	var handshake time.Time
	for _, p := range st.Peer {
		for _, ip := range p.TailscaleIPs {
			if ip == router {
				handshake = p.LastHandshake
			}
		}
	}
	if handshake.IsZero() {
		t.Fatalf("after WarmPath the node has no WireGuard session with the router %v", router)
	}

	c, err := n.DialTCP(ctx, netip.AddrPortFrom(sandbox.DemoAppIP, 80))
	if err != nil {
		t.Fatalf("dial the app after WarmPath: %v", err)
	}
	c.Close()
}

// WarmPath says so when the peer that carries the address does not
// answer, and when no peer carries it, rather than returning as if the
// path were warm.
func TestWarmPathFailsWhenNoPeerAnswers(t *testing.T) {
	sb := sandboxtest.Shared(t)
	ctx := ctxT(t, time.Minute)
	n := newNode(t, sb, "warm-fails")
	gone := newNode(t, sb, "warm-gone")
	goneIP := gone.IPv4()
	gone.Close()

	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := n.WarmPath(wctx, goneIP); err == nil {
		t.Errorf("WarmPath to %v, a node that left, succeeded", goneIP)
	}

	var nr *tailnet.NotRoutedError
	if err := n.WarmPath(ctx, netip.MustParseAddr("198.51.100.7")); !errors.As(err, &nr) {
		t.Errorf("WarmPath to an address no peer carries: %v, want a NotRoutedError", err)
	}
}
