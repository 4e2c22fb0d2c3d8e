// Package gcfloor keeps a process with a small live heap from collecting
// garbage more often than it needs to.
//
// Go starts a collection when the heap has grown to twice what was live
// after the last one (GOGC=100). A gateway keeps little alive — a few
// megabytes of config, caches and connections — but allocates a few
// kilobytes for every request, so at tens of thousands of requests a
// second it collected ten or more times a second, and each collection
// takes CPU from requests. Run raises the GC percent so that the heap
// may grow to a floor (DefaultFloor) before a collection, and lets
// it fall back to Go's own ratio as the live heap grows past half the
// floor: a process with much alive pays nothing more than before. This is
// the "heap floor" a memory ballast used to give, without the ballast.
//
// An operator's GOGC wins: with GOGC in the environment Run does nothing.
// GOMEMLIMIT still applies as usual (the collector runs more often near
// the limit whatever the percent).
package gcfloor

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/tailgate-dev/tailgate/internal/periodic"
)

// DefaultFloor is the floor tailgate gateway runs with: a collection
// about every 32 MiB of garbage (twice a second at 20,000 requests a
// second, against twelve at Go's default) for a resident size 30–50 MB
// above Go's default under load; 64 MiB measured no faster and ~30 MB
// larger still.
const DefaultFloor = 32 << 20

// Percent is the GC percent that puts the heap goal at floor when live
// bytes survived the last collection, and never below Go's default of
// 100 (a goal of twice the live heap).
//
// It is at most maxPercent: the goal is computed from the heap that was
// live at the last collection (none before the first), and a process
// whose live heap has grown since would otherwise overshoot the floor by
// as many times as it grew — at start, to hundreds of megabytes.
func Percent(live, floor uint64) int {
	const minLive = 1 << 20 // before the first collection live reads 0
	live = max(live, minLive)
	if floor <= 2*live {
		return 100
	}
	return int(min((floor-live)*100/live, maxPercent))
}

// maxPercent bounds the heap goal at 11 times the last live heap (or
// 40 MB, Go's minimum heap of 4 MB scaled by the percent, whichever is
// more: a process with almost nothing alive, at start, goes that far).
const maxPercent = 1000

// CheckEvery is how often Run follows the live heap.
const CheckEvery = time.Second

// Run keeps the GC percent at Percent(live heap, floor), now and every
// CheckEvery, until ctx ends, and then puts back what it found. It reports
// false, and does nothing, when GOGC is set in the environment or floor
// is 0.
func Run(ctx context.Context, floor uint64) bool {
	if _, set := os.LookupEnv("GOGC"); set || floor == 0 {
		return false
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	adjust := func() int {
		metrics.Read(sample)
		var live uint64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = sample[0].Value.Uint64()
		}
		return debug.SetGCPercent(Percent(live, floor))
	}
	was := adjust()
	go func() {
		periodic.Do(ctx, CheckEvery, func() { adjust() })
		debug.SetGCPercent(was)
	}()
	return true
}
