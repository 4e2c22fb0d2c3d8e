// Package handoff lets a fast HTTP/1.1 server serve a connection for as
// long as every request on it is one that server may serve, and hands the
// connection to net/http, bytes already read included, at the first
// request that is not.
//
// The fast server (fasthttp in the gateway) is only ever shown request
// heads this package has read and found unambiguous: a GET, HEAD or
// OPTIONS over HTTP/1.1 in origin form (visible ASCII, whole %-escapes in
// the path), with exactly one Host that net/http accepts, no body
// (no Content-Length, no Transfer-Encoding), no Upgrade and no Expect,
// every line ending in CRLF, every header name a token and every value
// free of control characters. Two HTTP parsers read such a head the same
// way, so the fast server never serves a request net/http would have
// read differently. Anything else — a body, an upgrade, HTTP/1.0, an
// odd byte, a head too long — stops the fast server at that request (it
// sees the connection end after answering everything before it) and net/http
// serves the connection from there on, with its own limits and its own
// answers to malformed input.
package handoff

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/tailgate-dev/tailgate/internal/pipe"
)

// MaxHead is the longest request head the fast server is shown; a longer
// one goes to net/http (which allows up to 1 MiB). The fast server's read
// buffer must hold at least this much.
const MaxHead = 4096

// Give hands c to l's Accept, or closes it once l is closed: a
// connection net/http takes whole, or one the fast server handed off.
func Give(l *pipe.Listener, c net.Conn) {
	if !l.Put(c) {
		c.Close()
	}
}

// Conn is a connection as the fast server reads it. Read returns only
// bytes of request heads found servable; at the first head that is not,
// Read reports net.ErrClosed (the fast server closes quietly after
// answering the requests before it) and Close hands the connection to the
// pipe.Listener net/http serves instead of closing it.
type Conn struct {
	net.Conn
	to *pipe.Listener
	// servable is asked before each head is released: false hands off.
	servable func() bool

	buf      []byte // read from Conn; buf[start:] not yet returned by Read
	start    int
	released int // buf[start:start+released] may be returned by Read

	handedOff atomic.Bool
	closed    atomic.Bool
}

// NewConn wraps c, whose requests not servable by the fast server go to
// l (which net/http serves). servable, if set, is asked before each request: false hands the
// connection off there (the fast server's config changed).
func NewConn(c net.Conn, l *pipe.Listener, servable func() bool) *Conn {
	return &Conn{Conn: c, to: l, servable: servable}
}

// NetConn is the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// HandedOff reports whether the connection went, or goes on Close, to
// net/http.
func (c *Conn) HandedOff() bool { return c.handedOff.Load() }

// Read returns the bytes of request heads found servable, reading more
// from the connection as needed.
func (c *Conn) Read(p []byte) (int, error) {
	for c.released == 0 {
		if c.handedOff.Load() {
			return 0, net.ErrClosed
		}
		pending := c.buf[c.start:]
		n, complete := scan(pending)
		switch {
		case n > 0 && (c.servable == nil || c.servable()):
			c.released = n
			continue
		case n > 0 || complete || len(pending) >= MaxHead:
			// A head the fast server must not see: everything before
			// it has been answered or is being answered; net/http gets
			// the connection from this byte on.
			c.handedOff.Store(true)
			return 0, net.ErrClosed
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.start:c.start+c.released])
	c.start += n
	c.released -= n
	return n, nil
}

// fill reads once more from the connection into buf, behind what is
// pending.
func (c *Conn) fill() error {
	if c.start == len(c.buf) {
		c.buf, c.start = c.buf[:0], 0
	} else if c.start > 0 && cap(c.buf)-len(c.buf) < 512 {
		n := copy(c.buf, c.buf[c.start:])
		c.buf, c.start = c.buf[:n], 0
	}
	if cap(c.buf)-len(c.buf) < 512 {
		nb := make([]byte, len(c.buf), max(2*cap(c.buf), 4096))
		copy(nb, c.buf)
		c.buf = nb
	}
	n, err := c.Conn.Read(c.buf[len(c.buf):cap(c.buf)])
	c.buf = c.buf[:len(c.buf)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = errors.New("handoff: empty read")
	}
	return err
}

// Close closes the connection, or hands it to net/http when a request
// the fast server must not serve is waiting.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if !c.handedOff.Load() {
		return c.Conn.Close()
	}
	// The fast server's deadlines are its own; net/http sets the ones it
	// wants.
	c.Conn.SetDeadline(time.Time{})
	Give(c.to, &replayConn{Conn: c.Conn, pending: c.buf[c.start:]})
	return nil
}

// replayConn reads pending before the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn is the wrapped connection.
func (c *replayConn) NetConn() net.Conn { return c.Conn }
