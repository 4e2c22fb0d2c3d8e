// Package pipe joins two connections: bytes flow both ways until both
// sides are done, each side's end of stream is passed on as a half-close
// (so a client that finishes sending still gets its answer), and both are
// closed at the end. The jail's relays, the API's run relay and the runner
// library's relay all carry a proxied connection this way. Listener
// hands connections taken over elsewhere to an http.Server.
package pipe

import (
	"io"
	"net"
	"sync"
)

// Join copies a→b and b→a until both directions end, then closes both.
// Closing either connection from elsewhere ends it early.
func Join(a, b net.Conn) {
	done := make(chan struct{}, 2)
	go copyHalf(a, b, done)
	go copyHalf(b, a, done)
	<-done
	<-done
	a.Close()
	b.Close()
}

// copyHalf copies src to dst, then passes the end of stream on.
func copyHalf(dst, src net.Conn, done chan<- struct{}) {
	io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
	done <- struct{}{}
}

// Group joins many pairs and can cut them all: a relay's Close must end
// the connections it carries, not only stop accepting new ones.
type Group struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Join joins a and b like [Join] unless the group is closed, in which case
// it closes both at once.
func (g *Group) Join(a, b net.Conn) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		a.Close()
		b.Close()
		return
	}
	if g.conns == nil {
		g.conns = map[net.Conn]struct{}{}
	}
	g.conns[a], g.conns[b] = struct{}{}, struct{}{}
	g.mu.Unlock()
	Join(a, b)
	g.mu.Lock()
	delete(g.conns, a)
	delete(g.conns, b)
	g.mu.Unlock()
}

// Close cuts every pair joined now and refuses later ones.
func (g *Group) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for c := range g.conns {
		c.Close()
	}
}
