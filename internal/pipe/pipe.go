// Package pipe joins two connections: bytes flow both ways until both
// sides are done, each side's end of stream is passed on as a half-close
// (so a client that finishes sending still gets its answer), and both are
// closed at the end. The jail's relays, the API's run relay and the runner
// library's relay all carry a proxied connection this way.
package pipe

import (
	"io"
	"net"
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
