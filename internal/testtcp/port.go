package testtcp

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// Ports a test may name in a config file (a gateway's bind, Postgres's
// port) are picked below Linux's ephemeral range (32768-60999 by
// default). A port the kernel handed out for ":0" and that the test then
// freed goes back to that range, where any outbound connection of a
// parallel test may take it as its source port before the config binds
// it ("address already in use"); the kernel never picks a port below the
// range on its own, so only another test's explicit listen can collide.
const (
	portLow  = 20000
	portHigh = 32768
)

// FreePort is a port of 127.0.0.1 that was free when asked, for a test
// that must write a port into a config before anything listens on it.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := PickPort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// PickPort is FreePort for test helpers without a testing.TB.
func PickPort() (int, error) {
	for range 100 {
		p := portLow + rand.IntN(portHigh-portLow)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		return p, nil
	}
	return 0, errors.New("testtcp: no free port below the ephemeral range in 100 tries")
}
