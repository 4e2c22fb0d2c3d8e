// Package batchwrite turns many small writes (access-log lines, one a
// request) into few write calls: each write is held in memory for at most
// a short interval, or until the buffer fills, then written with the
// others. On a busy gateway a system call per log line is a noticeable
// share of a request's CPU; nginx offers the same trade as access_log's
// buffer= and flush=.
package batchwrite

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// Writer batches writes to an io.Writer. It is safe for concurrent use;
// each Write is kept whole (a log line is never split between two
// batches unless it is longer than the buffer).
type Writer struct {
	mu      sync.Mutex
	w       *bufio.Writer
	every   time.Duration
	pending bool // a flush is scheduled
	closed  bool
	err     error // the first write error, returned by later writes
}

// New batches writes to w, writing each at most every after it was made
// and whenever size bytes are waiting.
func New(w io.Writer, size int, every time.Duration) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, size), every: every}
}

// Write holds p for the next batch.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if b.closed {
		// After Close, writes go straight through.
		n, err := b.w.Write(p)
		if err == nil {
			err = b.w.Flush()
		}
		return n, err
	}
	if len(p) > b.w.Available() && b.w.Buffered() > 0 {
		// Keep p whole: write what waits first.
		if err := b.w.Flush(); err != nil {
			b.err = err
			return 0, err
		}
	}
	n, err := b.w.Write(p)
	if err != nil {
		b.err = err
		return n, err
	}
	if !b.pending && b.w.Buffered() > 0 {
		b.pending = true
		time.AfterFunc(b.every, b.flushLater)
	}
	return n, nil
}

func (b *Writer) flushLater() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = false
	if err := b.w.Flush(); err != nil && b.err == nil {
		b.err = err
	}
}

// Flush writes what waits now.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.w.Flush(); err != nil && b.err == nil {
		b.err = err
	}
	return b.err
}

// Close writes what waits; later writes are written at once. It does not
// close the underlying writer.
func (b *Writer) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.Flush()
}
