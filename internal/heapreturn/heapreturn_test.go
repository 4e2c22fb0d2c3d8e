package heapreturn

import (
	"runtime"
	"testing"
)

// garbage allocates and touches n bytes, drops them and collects, so
// that the runtime holds them as freed heap.
func garbage(n int) {
	b := make([]byte, n)
	for i := range b {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	b = nil
	runtime.GC()
}

func TestReturnGivesFreedHeapBackOnlyPastTheThreshold(t *testing.T) {
	// What the package is for: a large live heap, mostly never touched
	// (as tsnet nodes' receive batches are), which keeps the runtime from
	// returning freed memory by itself.
	untouched := make([]byte, 1<<30)
	defer runtime.KeepAlive(untouched)
	garbage(64 << 20)
	kept := FreeBytes()
	if kept < 32<<20 {
		t.Skipf("the runtime returned the garbage itself (%d bytes kept); nothing to test", kept)
	}
	if Return(kept + 1<<30) {
		t.Fatalf("returned with %d bytes kept, below a threshold of %d", kept, kept+1<<30)
	}
	if FreeBytes() < 32<<20 {
		t.Fatal("the freed heap went although the threshold was not reached")
	}
	if !Return(1 << 20) {
		t.Fatalf("did not return %d bytes kept past a 1 MiB threshold", kept)
	}
	if after := FreeBytes(); after >= 8<<20 {
		t.Fatalf("%d bytes still kept after a return (%d before)", after, kept)
	}
}
