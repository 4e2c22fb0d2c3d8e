package testtcp

import (
	"bufio"
	"net"
	"strconv"
	"testing"
)

func TestServeHandsEachConnectionToTheHandler(t *testing.T) {
	addr := Serve(t, func(c net.Conn) {
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Write([]byte("echo " + line))
	})
	// Two clients at once: each is served while the other waits.
	a, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Write([]byte("b\n"))
	if got, _ := bufio.NewReader(b).ReadString('\n'); got != "echo b\n" {
		t.Errorf("second client got %q", got)
	}
	a.Write([]byte("a\n"))
	if got, _ := bufio.NewReader(a).ReadString('\n'); got != "echo a\n" {
		t.Errorf("first client got %q", got)
	}
	if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
		t.Errorf("listening on %s; want loopback", addr)
	}
}

func TestFreePortCanBeListenedOnAndIsBelowTheEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := FreePort(t)
		if p < portLow || p >= portHigh {
			t.Fatalf("port %d outside [%d, %d)", p, portLow, portHigh)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("FreePort gave %d, which cannot be listened on: %v", p, err)
		}
		ln.Close()
		seen[p] = true
	}
	if len(seen) < 10 {
		t.Errorf("20 picks gave only %d distinct ports; parallel tests would collide", len(seen))
	}
}
