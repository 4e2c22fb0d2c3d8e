package testtcp

import (
	"bufio"
	"net"
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
