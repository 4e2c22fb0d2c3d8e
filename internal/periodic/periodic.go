// Package periodic runs a background chore — a sweep, a reconcile, a
// re-verification — at a fixed interval until its context ends, the one
// ticker loop the server's long-running parts share.
package periodic

import (
	"context"
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
