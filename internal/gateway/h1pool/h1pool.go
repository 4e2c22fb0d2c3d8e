// Package h1pool is the gateway's lean upstream path: it sends plain
// HTTP/1.1 requests that carry no body over pooled keep-alive
// connections, in the caller's goroutine, and hands every other request
// to net/http's Transport.
//
// Why: net/http's Transport serves each connection with a read and a
// write goroutine and passes every request and response between them
// and the caller over channels. Under load on a small machine those
// hand-offs and wake-ups cost more than the proxying itself (under wrk,
// the Transport's two loops were a quarter of the gateway's CPU). Here
// the caller writes the request with net/http's own request writer and
// reads the answer with net/http's own response parser on a connection
// it holds alone; only the pool is this package's.
//
// The lean path takes only requests whose failure can always be retried
// and whose exchange cannot deadlock one goroutine: methods GET, HEAD
// and OPTIONS, no body, no trailers, no protocol upgrade, scheme http.
// A request on a reused connection that the upstream had already closed
// is sent once more on a new connection, as the Transport does.
package h1pool

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits of a Pool. The header limit matches a bound a hostile upstream
// cannot push memory past; the idle limits match the gateway's Transport.
const (
	maxResponseHeaderBytes = 1 << 20
	maxIdlePerHost         = 256
	idleTimeout            = 90 * time.Second
	readBufferSize         = 16 << 10
	writeBufferSize        = 4 << 10
)

// Pool is an http.RoundTripper: the lean path for the requests it can
// take, Fallback for the rest. The zero value is not usable; use New.
type Pool struct {
	// Fallback carries every request the lean path does not take.
	Fallback http.RoundTripper
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)

	mu   sync.Mutex
	idle map[string][]*conn // by host:port, most recently used last
}

// New returns a Pool that dials with dial and sends what it cannot take
// to fallback.
func New(fallback http.RoundTripper, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Pool {
	return &Pool{Fallback: fallback, dial: dial, idle: map[string][]*conn{}}
}

// Lean reports whether the lean path takes req.
func Lean(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	return req.URL.Scheme == "http" &&
		(req.Body == nil || req.Body == http.NoBody) && req.ContentLength == 0 &&
		len(req.Trailer) == 0 && len(req.TransferEncoding) == 0 &&
		req.Header.Get("Upgrade") == ""
}

// RoundTrip sends req and returns the upstream's answer.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	if !Lean(req) {
		return p.Fallback.RoundTrip(req)
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	for {
		c, reused, err := p.get(req.Context(), req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(req)
		if err == nil {
			resp.Body = &body{ReadCloser: resp.Body, pool: p, conn: c, keep: !resp.Close && !req.Close}
			return resp, nil
		}
		c.close()
		// An upstream closes idle connections when it likes; a reused
		// one that ends before any answer is retried on a new one. Every
		// lean request is safe to send twice.
		if reused && c.nothingRead() && req.Context().Err() == nil {
			continue
		}
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
}

// CloseIdleConnections closes every idle connection, the lean path's
// and the fallback's.
func (p *Pool) CloseIdleConnections() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*conn{}
	p.mu.Unlock()
	for _, cs := range idle {
		for _, c := range cs {
			c.close()
		}
	}
	if ci, ok := p.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// get returns an idle connection to host, or a new one.
func (p *Pool) get(ctx context.Context, host string) (c *conn, reused bool, err error) {
	now := time.Now()
	p.mu.Lock()
	for cs := p.idle[host]; len(cs) > 0; cs = p.idle[host] {
		c = cs[len(cs)-1]
		p.idle[host] = cs[:len(cs)-1]
		if now.Sub(c.idleSince) >= idleTimeout {
			c.close()
			continue
		}
		p.mu.Unlock()
		if stillIdle(c.Conn) {
			return c, true, nil
		}
		c.close()
		p.mu.Lock()
	}
	p.mu.Unlock()
	nc, err := p.dial(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	c = &conn{Conn: nc, host: host}
	c.limited = &limitedReader{r: nc}
	c.br = bufio.NewReaderSize(c.limited, readBufferSize)
	c.bw = bufio.NewWriterSize(nc, writeBufferSize)
	return c, false, nil
}

// put keeps c for the next request to its host, or closes it when the
// host already has enough idle connections.
func (p *Pool) put(c *conn) {
	c.idleSince = time.Now()
	p.mu.Lock()
	cs := p.idle[c.host]
	if len(cs) >= maxIdlePerHost {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle[c.host] = append(cs, c)
	p.mu.Unlock()
}

// conn is one upstream connection, used by one request at a time.
type conn struct {
	net.Conn
	host      string
	limited   *limitedReader
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	// stop ends the watch on the current request's context; false once
	// the context has already closed the connection.
	stop func() bool
}

// roundTrip writes req and reads the head of its answer. The request's
// context closes the connection if it ends first.
func (c *conn) roundTrip(req *http.Request) (*http.Response, error) {
	c.stop = context.AfterFunc(req.Context(), func() { c.Conn.Close() })
	c.limited.n = maxResponseHeaderBytes
	c.limited.read = 0
	if err := req.Write(c.bw); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			if c.limited.n == 0 {
				return nil, errHeaderTooLarge
			}
			return nil, err
		}
		// 1xx answers (100 Continue, 103 Early Hints) precede the real
		// one; 101 is the real one, and only upgrades get it.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		c.limited.n = -1 // the body is bounded by its own framing
		return resp, nil
	}
}

var errHeaderTooLarge = errors.New("h1pool: upstream response header exceeds 1 MiB")

// nothingRead reports whether the upstream sent no byte of an answer.
func (c *conn) nothingRead() bool { return c.limited.read == 0 }

func (c *conn) close() {
	if c.stop != nil {
		c.stop()
	}
	c.Conn.Close()
}

// release ends the context watch; it reports false when the context has
// already closed the connection.
func (c *conn) release() bool {
	if c.stop == nil {
		return true
	}
	ok := c.stop()
	c.stop = nil
	return ok
}

// limitedReader bounds what the response head may read (n < 0: no
// bound) and counts what was read.
type limitedReader struct {
	r    io.Reader
	n    int64
	read int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n == 0 {
		return 0, io.EOF
	}
	if l.n > 0 && int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.n > 0 {
		l.n -= int64(n)
	}
	return n, err
}

// body is a response body; read to its end on a connection both sides
// keep open, its connection goes back to the pool.
type body struct {
	io.ReadCloser
	pool *Pool
	conn *conn
	keep bool
	eof  bool
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	if !b.eof {
		// A body read exactly to its length has not seen EOF yet.
		var one [1]byte
		if n, err := b.ReadCloser.Read(one[:]); n == 0 && err == io.EOF {
			b.eof = true
		}
	}
	err := b.ReadCloser.Close()
	if b.eof && b.keep && b.conn.release() && b.conn.br.Buffered() == 0 {
		b.pool.put(b.conn)
		return err
	}
	b.conn.close()
	return err
}
