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

func TestDoNowAndOnWakeRunsAtOnceAndWhenWoken(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var w Waker
	w.Wake() // a wake before the loop starts is kept, not lost or blocking
	w.Wake() // and a second one folds into it
	if n := len(w.c()); n != 1 {
		t.Fatalf("%d wakes pending after two Wake calls; want them folded into 1", n)
	}
	calls := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		// An hour: every call below is the first one or a wake's.
		DoNowAndOnWake(ctx, time.Hour, &w, func() { calls <- struct{}{} })
	}()
	<-calls // at once
	<-calls // the pending wake
	w.Wake()
	<-calls
	cancel()
	for {
		select {
		case <-calls:
		case <-done:
			return
		}
	}
}
