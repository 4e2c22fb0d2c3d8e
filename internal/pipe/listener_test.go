package pipe

import (
	"errors"
	"net"
	"testing"
)

func TestListenerHandsOverUntilClosed(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443}
	l := NewListener(addr)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go l.Put(a)
	got, err := l.Accept()
	if err != nil || got != a {
		t.Fatalf("Accept = %v, %v; want the connection Put handed over", got, err)
	}
	if l.Addr() != addr {
		t.Errorf("Addr = %v", l.Addr())
	}
	l.Close()
	l.Close() // twice is fine
	if l.Put(b) {
		t.Error("Put after Close reported the connection taken")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v; want net.ErrClosed", err)
	}
}
