package egress

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tunnel copies bytes both ways between a client and a tailnet connection
// until both directions end, and returns the byte counts. prefix holds
// client bytes already read (buffered behind an HTTP CONNECT request).
func (p *Proxy) tunnel(client, upstream net.Conn, prefix []byte) (up, down int64, err error) {
	if len(prefix) > 0 {
		n, werr := upstream.Write(prefix)
		up += int64(n)
		if werr != nil {
			return up, 0, werr
		}
	}
	// Every read passes through activityReader, which also hides the
	// connections' splice path: measured on loopback (bench/egress), a
	// plain copy with a large buffer beats splice(2) through a pipe.
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	if p.idleTimeout > 0 {
		defer p.watchIdle(&last, client, upstream)()
	}

	var wg sync.WaitGroup
	var upErr, downErr error
	var nUp, nDown int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, tunnelBuffer)
		nUp, upErr = io.CopyBuffer(writerOnly{upstream}, &activityReader{client, &last}, buf)
		endDirection(upstream, client, upErr)
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, tunnelBuffer)
		nDown, downErr = io.CopyBuffer(writerOnly{client}, &activityReader{upstream, &last}, buf)
		endDirection(client, upstream, downErr)
	}()
	wg.Wait()
	return up + nUp, nDown, errors.Join(quiet(upErr), quiet(downErr))
}

// endDirection half-closes the writing side after a clean EOF so the other
// direction can still finish; on an error it ends both.
// Without half-close support it leaves the other direction running; the
// caller closes both ends when the tunnel returns.
func endDirection(w, r net.Conn, err error) {
	if err == nil {
		if cw, ok := w.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		return
	}
	w.Close()
	r.Close()
}

// quiet drops the errors that only mean "the other side or Close ended it".
func quiet(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// tunnelBuffer is the copy buffer per tunnel direction.
const tunnelBuffer = 256 << 10

// writerOnly hides io.ReaderFrom so io.CopyBuffer uses our buffer.
type writerOnly struct{ io.Writer }

type activityReader struct {
	r    io.Reader
	last *atomic.Int64
}

func (a *activityReader) Read(b []byte) (int, error) {
	n, err := a.r.Read(b)
	if n > 0 {
		a.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// watchIdle closes both ends when no byte has moved for IdleTimeout.
func (p *Proxy) watchIdle(last *atomic.Int64, a, b net.Conn) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(max(p.idleTimeout/4, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if now.Sub(time.Unix(0, last.Load())) >= p.idleTimeout {
					a.Close()
					b.Close()
					return
				}
			}
		}
	}()
	return func() { close(done) }
}
