package gateway

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// defaultBodyReadTimeout is bind.bodyReadTimeout when unset.
const defaultBodyReadTimeout = 30 * time.Second

// minBodyRate is how fast, in bytes per second, a body must keep arriving
// once its timeout has passed: every byte received extends the deadline
// by 1/minBodyRate s. A large upload at a modest rate never times out; a
// client dripping a byte every few seconds is cut off after the timeout.
const minBodyRate = 1024

// bodyGuard wraps a request body for two things the reverse proxy cannot
// tell apart on its own: it bounds how long the body may take to arrive
// (a read deadline on the client's connection, moved forward as bytes
// arrive), and it remembers when reading the body failed, so a malformed
// chunked body or a stalled client is answered 400 / 408 as the client's
// fault, not 502 as the backend's.
type bodyGuard struct {
	io.ReadCloser
	rc      *http.ResponseController
	start   time.Time
	timeout time.Duration // 0: no deadline, only error tracking

	mu       sync.Mutex // Read runs in the proxy's transport goroutine
	n        int64
	deadline time.Time
	err      error
	done     bool
}

// guardBody installs a bodyGuard on r unless r has no body. w must be the
// server's ResponseWriter (or one that unwraps to it) for the deadline.
func guardBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) *bodyGuard {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	g := &bodyGuard{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now(), timeout: timeout}
	if timeout > 0 {
		g.deadline = g.start.Add(timeout)
		g.rc.SetReadDeadline(g.deadline)
	}
	r.Body = g
	return g
}

func (g *bodyGuard) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n += int64(n)
	switch {
	case err == io.EOF:
		g.done = true
		if g.timeout > 0 {
			// The whole body is in: lift the deadline, so a long streamed
			// response is not cut when it passes.
			g.deadline = time.Time{}
			g.rc.SetReadDeadline(time.Time{})
		}
	case err != nil:
		if g.err == nil {
			g.err = err
		}
	case g.timeout > 0:
		// Move the deadline only in whole seconds: one syscall-free
		// comparison per read instead of a deadline update per read.
		d := g.start.Add(g.timeout + time.Duration(g.n/minBodyRate)*time.Second)
		if d.Sub(g.deadline) >= time.Second {
			g.deadline = d
			g.rc.SetReadDeadline(d)
		}
	}
	return n, err
}

// clientFault says whether the body failed on the client's side and with
// which status to answer: 408 when it stalled past its deadline, 400 when
// it was malformed or cut short.
func (g *bodyGuard) clientFault() (status int, reason string, ok bool) {
	if g == nil {
		return 0, "", false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return 0, "", false
	}
	var ne net.Error
	switch {
	case g.err != nil && errors.As(g.err, &ne) && ne.Timeout():
		return http.StatusRequestTimeout, "request body timeout", true
	case g.err != nil:
		return http.StatusBadRequest, "malformed request body: " + g.err.Error(), true
	case !g.deadline.IsZero() && !time.Now().Before(g.deadline):
		// The deadline fired but the proxy saw the request's context end
		// before this Read returned its error.
		return http.StatusRequestTimeout, "request body timeout", true
	}
	return 0, "", false
}

// bodyFault is clientFault for the request ri describes (nil-safe).
func (ri *requestInfo) bodyFault() (int, string, bool) {
	if ri == nil {
		return 0, "", false
	}
	return ri.body.clientFault()
}
