package mcp

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A target's notification about a request (a log line, progress,
// elicitation-complete) must reach the client on that request's stream
// before the answer, which ends the stream. The SDK's client reads the
// target's messages in order but hands notifications to handlers on
// another goroutine than answers: the answer to a call can come back,
// and be written to the client (closing its stream), before the
// handler has relayed the notification that preceded it, which is then
// dropped ("write to closed stream") or sent on another request's
// stream. So every connection counts the relayable notifications its
// reader has seen and the ones relayed, and a call, once answered, waits
// until everything seen so far has been relayed (catchUp) before its
// answer goes on.

// relayWait bounds catchUp: a notification counted as seen but never
// relayed (the SDK rejected it) must not hold every later call.
var relayWait = time.Second

// relayCount is a connection's tally of relayable notifications.
type relayCount struct {
	seen    atomic.Int64
	mu      sync.Mutex
	relayed int64
	more    chan struct{} // closed and replaced when relayed grows
}

func (r *relayCount) init() { r.more = make(chan struct{}) }

// noteRelayed records that a notification has been relayed.
func (r *relayCount) noteRelayed() {
	r.mu.Lock()
	r.relayed++
	close(r.more)
	r.more = make(chan struct{})
	r.mu.Unlock()
}

// catchUp waits until every relayable notification seen so far has
// been relayed, ctx ends, or relayWait passes (then what is missing is
// forgiven, so one lost notification delays one call only).
func (r *relayCount) catchUp(ctx context.Context) {
	want := r.seen.Load()
	var timeout <-chan time.Time
	for {
		r.mu.Lock()
		if r.relayed >= want {
			r.mu.Unlock()
			return
		}
		more := r.more
		r.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(relayWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-more:
		case <-ctx.Done():
			return
		case <-timeout:
			r.mu.Lock()
			r.relayed = max(r.relayed, want)
			r.mu.Unlock()
			return
		}
	}
}

// relayedInOrder are the notifications fromTarget relays to the request
// they concern.
func relayedInOrder(method string) bool {
	switch method {
	case "notifications/message", "notifications/progress", "notifications/elicitation/complete":
		return true
	}
	return false
}

// ssePatterns are how relayable notifications appear on an SSE stream
// (JSON as every MCP SDK encodes it: no space after the colon).
var ssePatterns = [][]byte{
	[]byte(`"method":"notifications/message"`),
	[]byte(`"method":"notifications/progress"`),
	[]byte(`"method":"notifications/elicitation/complete"`),
}

// countingClient is the HTTP client for an HTTP or SSE target: it counts
// the relayable notifications in event streams as the SDK reads them,
// which is before it reads (and delivers) the answer after them.
func countingClient(base *http.Client, n *relayCount) *http.Client {
	c := http.Client{}
	if base != nil {
		c = *base
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = countingTransport{base: rt, n: n}
	return &c
}

type countingTransport struct {
	base http.RoundTripper
	n    *relayCount
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err == nil && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: t.n}
	}
	return resp, err
}

// countingBody counts ssePatterns in what is read through it; tail keeps
// the end of the previous read (one byte less than the longest
// pattern), for a pattern split between two reads.
type countingBody struct {
	io.ReadCloser
	n    *relayCount
	tail []byte
	buf  []byte
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.buf = append(append(b.buf[:0], b.tail...), p[:n]...)
		for _, pat := range ssePatterns {
			// A match that ends within tail was counted by the previous
			// read.
			for i := 0; ; {
				j := bytes.Index(b.buf[i:], pat)
				if j < 0 {
					break
				}
				if i+j+len(pat) > len(b.tail) {
					b.n.seen.Add(1)
				}
				i += j + 1
			}
		}
		keep := len(ssePatterns[2]) - 1 // the longest
		if len(b.buf) < keep {
			keep = len(b.buf)
		}
		b.tail = append(b.tail[:0], b.buf[len(b.buf)-keep:]...)
	}
	return n, err
}
