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

// Forward accepts connections on ln until ln is closed and joins each, in
// a goroutine of its own, to the connection dial opens for it; when dial
// fails, the accepted connection is closed. It returns when Accept fails
// (ln closed). Pairs are joined in g, so that g.Close cuts them; nil
// joins them with [Join]. wg, when not nil, counts the goroutines Forward
// starts, so that a relay's Close can wait for them.
func Forward(ln net.Listener, dial func() (net.Conn, error), g *Group, wg *sync.WaitGroup) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		if wg != nil {
			wg.Add(1)
		}
		go func() {
			if wg != nil {
				defer wg.Done()
			}
			out, err := dial()
			if err != nil {
				in.Close()
				return
			}
			if g != nil {
				g.Join(in, out)
			} else {
				Join(in, out)
			}
		}()
	}
}
