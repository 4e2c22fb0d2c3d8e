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
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
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

// Main runs the package's tests and closes the shared sandbox afterwards.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	os.Exit(code)
}
