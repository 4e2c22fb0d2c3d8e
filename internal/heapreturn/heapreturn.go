// Package heapreturn gives heap memory the garbage collector has freed back
// to the operating system, in a process that holds tailnet nodes.
//
// Every tsnet node preallocates wireguard-go's receive batches on Linux:
// 4 × 128 buffers of 64 KiB, 32 MiB per node, counted as live heap though
// packets touch only a little of it. The runtime sets its heap goal, and
// its background scavenger the memory it keeps, from that live heap: with
// 100 nodes open it believes 3.3 GB is in use, so memory freed by a
// collection (netmap updates, the control's and the API's garbage) stays
// resident indefinitely. Measured in bench/run at 100 runs: 0.4 MB per
// run with the control elsewhere, 1.4 MB with headscale's subnet router in
// the same process, 2.5 MB with the sandbox's control in it. GOGC lowers it
// for every collection and costs throughput when few nodes are open;
// GOMEMLIMIT counts the untouched buffers too, so set below them it makes
// the collector run continually.
//
// [Run] instead looks at the freed-but-kept heap every few seconds and,
// once it passes a threshold, returns it all ([debug.FreeOSMemory], which
// collects first): one collection now and then, only when there is memory
// to give back.
package heapreturn

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/tailgate-dev/tailgate/internal/periodic"
)

// Defaults for tailgate serve.
const (
	// DefaultThreshold is the freed heap kept that makes Run return it:
	// small beside a process holding many nodes (100 runs keep 30-40 MiB
	// freed with the control elsewhere), and large enough that a process
	// without them, whose runtime returns memory itself, is rarely
	// collected for it. A return costs one collection, whose marking
	// skips the untouched buffers (they hold no pointers).
	DefaultThreshold = 16 << 20
	// CheckEvery is how often Run looks; a look reads one runtime metric.
	CheckEvery = 5 * time.Second
)

// freeMetric is heap memory that is free and not yet returned to the OS.
const freeMetric = "/memory/classes/heap/free:bytes"

// FreeBytes is the heap memory the collector has freed and the runtime
// still keeps resident.
func FreeBytes() uint64 {
	s := []metrics.Sample{{Name: freeMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Return gives the free heap back to the OS when at least threshold bytes
// of it are kept, and reports whether it did.
func Return(threshold uint64) bool {
	if FreeBytes() < threshold {
		return false
	}
	debug.FreeOSMemory()
	return true
}

// Run calls Return(threshold) every CheckEvery until ctx ends.
func Run(ctx context.Context, threshold uint64) {
	periodic.Do(ctx, CheckEvery, func() { Return(threshold) })
}
