package periodic

import (
	"context"
	"testing"
	"time"
)

func TestDoRepeatsUntilTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		Do(ctx, time.Millisecond, func() { calls <- struct{}{} })
	}()
	for range 3 {
		<-calls
	}
	cancel()
	for {
		select {
		case <-calls: // a tick that raced the cancel
		case <-done:
			return
		}
	}
}
