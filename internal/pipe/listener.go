package pipe

import (
	"net"
	"sync"
)

// Listener is a net.Listener whose connections are handed to it in
// process (Put) rather than accepted from a network: an http.Server can
// then serve connections another server took over (a sniffed connection,
// a CONNECT tunnel).
type Listener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// NewListener returns a Listener that reports addr as its address.
func NewListener(addr net.Addr) *Listener {
	return &Listener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Put hands c to the next Accept. It waits for one, and reports false
// (leaving c to the caller) once the listener is closed.
func (l *Listener) Put(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept returns the next connection Put hands over, or net.ErrClosed
// once the listener is closed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and Put; it may be called more than once.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is the address given to NewListener.
func (l *Listener) Addr() net.Addr { return l.addr }
