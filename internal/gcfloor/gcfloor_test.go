package gcfloor

import (
	"context"
	"os"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, floor uint64
		want        int
	}{
		{0, 64 * mib, 1000},       // nothing live yet: as if 1 MiB, capped
		{4 * mib, 64 * mib, 1000}, // 1500 would reach 64 MiB; capped at 11× live
		{8 * mib, 64 * mib, 700},  // goal 8 + 56 = 64 MiB
		{16 * mib, 64 * mib, 300}, // goal 64 MiB
		{32 * mib, 64 * mib, 100}, // twice the live heap is the floor already
		{500 * mib, 64 * mib, 100},
	} {
		if got := Percent(c.live, c.floor); got != c.want {
			t.Errorf("Percent(%d MiB, %d MiB) = %d, want %d", c.live/mib, c.floor/mib, got, c.want)
		}
	}
}

// cycles is the number of collections so far.
func cycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// gogc is the GC percent in force.
func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

var sink []byte

// churn allocates n MiB of garbage, a kilobyte at a time, as requests do.
func churn(n int) uint64 {
	before := cycles()
	for range n << 10 {
		sink = make([]byte, 1024)
	}
	return cycles() - before
}

// heapGoal is the heap size at which the next collection starts.
func heapGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// With the floor, a process with little alive lets its heap grow many
// times further before collecting, so it collects a fraction as often for
// the same garbage; when Run's context ends, Go's ratio is back. The
// assertion is on the heap goal, read after a full collection: counting
// collections while allocating is also logged, but on a loaded machine a
// slow collection counts what was allocated during it as alive, and the
// counts mean little.
func TestFloorCollectsLessOften(t *testing.T) {
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set: the floor stands aside")
	}
	runtime.GC()
	plainGoal := heapGoal()
	plain := churn(256)
	runtime.GC() // an exact live heap for Run to read
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !Run(ctx, 64<<20) {
		t.Fatal("Run did not start")
	}
	if p := gogc(); p <= 100 {
		t.Errorf("GC percent under Run with little alive = %d, want it raised", p)
	}
	runtime.GC()
	floorGoal := heapGoal()
	floored := churn(256)
	t.Logf("heap goal %d MiB at GOGC=100, %d MiB with a 64 MiB floor; collections for 256 MiB of garbage: %d and %d",
		plainGoal>>20, floorGoal>>20, plain, floored)
	if floorGoal < 4*plainGoal {
		t.Errorf("heap goal with the floor %d MiB, without %d MiB: want at least 4 times as far", floorGoal>>20, plainGoal>>20)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for gogc() != 100 {
		if time.Now().After(deadline) {
			t.Fatal("the GC percent was not put back when Run's context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOperatorsGOGCWins(t *testing.T) {
	t.Setenv("GOGC", "100")
	if Run(context.Background(), 64<<20) || gogc() != 100 {
		t.Errorf("Run started although GOGC is set (GC percent %d)", gogc())
	}
}

func TestNoFloorNoChange(t *testing.T) {
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set")
	}
	if Run(context.Background(), 0) || gogc() != 100 {
		t.Errorf("Run started with a floor of 0 (GC percent %d)", gogc())
	}
}
