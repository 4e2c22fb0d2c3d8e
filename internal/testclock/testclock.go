// Package testclock is a clock a test moves by hand, for code that reads
// the time through a Now func (allowlist.Service.Now, the fake Tailscale
// API's Options.Now): announcements, expiries and retries happen when the
// test says, not when the wall clock gets there. It imports nothing of
// tailgate, so any test package can use it.
package testclock

import (
	"sync"
	"time"
)

// Clock is a time that moves only by Advance. It is safe for concurrent
// use: the code under test reads it from its own goroutines.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New is a clock standing at start.
func New(start time.Time) *Clock { return &Clock{t: start} }

// Now is the clock's time; pass the method value as the code's Now.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
