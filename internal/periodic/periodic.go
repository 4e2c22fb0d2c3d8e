// Package periodic runs a background chore — a sweep, a reconcile, a
// re-verification, a delivery — at a fixed interval (and, with
// DoNowAndOnWake, whenever asked) until its context ends: the ticker
// loops the server's long-running parts share.
package periodic

import (
	"context"
	"sync"
	"time"
)

// Do calls f every interval until ctx is done; the first call is one
// interval from now. f runs on the caller's goroutine, so a slow call
// delays the next rather than overlapping it (the ticker drops the ticks
// it missed).
func Do(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// Waker lets other goroutines ask a DoNowAndOnWake loop to run before its
// next tick. The zero value is ready to use.
type Waker struct {
	once sync.Once
	ch   chan struct{}
}

func (w *Waker) c() chan struct{} {
	w.once.Do(func() { w.ch = make(chan struct{}, 1) })
	return w.ch
}

// Wake asks the loop to run f again as soon as the current call (if any)
// returns. It never blocks: wakes that arrive while one is pending fold
// into it, since one more call catches up with all of them.
func (w *Waker) Wake() {
	select {
	case w.c() <- struct{}{}:
	default:
	}
}

// DoNowAndOnWake calls f at once, then again every interval and whenever
// w is woken, until ctx is done: for a chore that must react to a change
// promptly (a webhook delivery, a pool refill) and still catch up on its
// own if no one says so. Like Do, f runs on the caller's goroutine.
func DoNowAndOnWake(ctx context.Context, interval time.Duration, w *Waker, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	wake := w.c()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
	}
}
