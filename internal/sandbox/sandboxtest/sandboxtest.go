// Package sandboxtest shares one sandbox tailnet among the tests of a
// package: starting one costs a router and a device join, and most tests
// only need a tailnet, not a fresh one.
//
//	func TestMain(m *testing.M) { sandboxtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		sb := sandboxtest.Shared(t)
//		...
//	}
package sandboxtest

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

var (
	once   sync.Once
	shared *sandbox.Sandbox
	err    error
)

// Shared returns the package's sandbox, starting it on first use.
func Shared(t testing.TB) *sandbox.Sandbox {
	t.Helper()
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared, err = sandbox.Start(ctx, sandbox.Options{})
	})
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	return shared
}

// Start starts a sandbox of the test's own, closed when the test ends: for
// a test that changes what every node of the tailnet sees (app
// capabilities, say) or counts on a tailnet no other test has touched.
func Start(t testing.TB) *sandbox.Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

// Main runs the package's tests and closes the shared sandbox afterwards.
func Main(m *testing.M) {
	code := m.Run()
	Close()
	os.Exit(code)
}

// Close closes the shared sandbox, if a test started it: for a TestMain
// that cannot call Main (it calls pgtest.Main, say).
func Close() {
	if shared != nil {
		shared.Close()
	}
}

// WaitDeviceGone waits until no device named hostname is in the sandbox's
// device list, as the Tailscale API reports it, and fails the test if one
// still is after 15 seconds.
func WaitDeviceGone(t testing.TB, sb *sandbox.Sandbox, hostname string) {
	t.Helper()
	cp := tsapi.NewWithAPIToken(sb.APIURL(), sb.NewAPIToken())
	deadline := time.Now().Add(15 * time.Second)
	for {
		devs, err := cp.Devices(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(devs, func(d tsapi.Device) bool { return d.Hostname == hostname }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s still in the tailnet", hostname)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
