// Package testtcp is a test's raw TCP server on loopback: each accepted
// connection goes to the test's handler in a goroutine of its own, and
// the listener closes when the test ends. Tests that need a stream
// target (an echo, a sink, a greeter) state only what it does with a
// connection. It imports nothing of tailgate, so any test package can use
// it.
package testtcp

import (
	"net"
	"testing"
)

// Serve listens on a free port of 127.0.0.1 and calls handle for each
// connection, each in its own goroutine, until the test ends; it returns
// the listening address (host:port). handle owns its connection and
// closes it.
func Serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l.Addr().String()
}
