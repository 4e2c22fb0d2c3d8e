// Package run_test benchmarks runs on the sandbox tailnet: run start → first
// byte of the private app through the run's proxy, and many concurrent runs
// in one process. Run with
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/run/
//
// BenchmarkRunStartToFirstByte measures runs that join when they start
// and runs that take a node from a warm pool (serve --warm-pool), in the
// same run, one after the other. BENCH_RUNS sets the concurrent run count
// (default 100). Memory is
// reported two ways: resident memory, and live heap after a full GC (the
// measure of Tailscale's tstest/membudget); the heap figure includes
// wireguard-go's preallocated receive batches (128 buffers of 64 KiB per
// receive path) that are mostly never touched, so it exceeds RSS. The
// benchmark's own sandbox holds a customer policy with no allow-all rule
// (the sandbox enforces grants), so runners of one environment do not peer,
// as on Tailscale and headscale, and memory per run does not grow with the
// square of the count.
package run_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/bench/measure"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tailgatetest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

type fixture struct {
	m   *run.Manager
	s   *tailgatetest.Stack
	org string
}

// setup is a tailgate with environment "bench" connected to the demo app
// on the shared sandbox, and a run manager without leases.
// customerPolicy is a tailnet with no allow-all rule: everyone resolves
// internal names through the office router, and tailgate adds its own
// grant for the environment when it connects. Runs of one environment then
// do not peer with each other, as on Tailscale and headscale, so memory per
// run is not testcontrol's every-node-peers cost.
const customerPolicy = `{
	"hosts": {"office-dns": "100.64.0.1"},
	"grants": [{"src": ["*"], "dst": ["office-dns"], "ip": ["53"]}],
}`

func setup(b *testing.B) *fixture {
	sb := sandboxtest.Start(b)
	sb.API().SetPolicy([]byte(customerPolicy))
	s := tailgatetest.New(b, sb)
	s.ConnectEnv(b, "bench", sandbox.DemoAppName+":80")
	m := &run.Manager{Connect: s.Connect, Store: s.Store, Logger: slog.New(slog.DiscardHandler), Lease: -1}
	b.Cleanup(m.Close)
	return &fixture{m: m, s: s, org: s.Org}
}

// pooled is another run manager on f's tailgate with a warm pool of
// size, refilling until the benchmark ends.
func (f *fixture) pooled(b *testing.B, size int) (*run.Manager, *run.Pool) {
	p := &run.Pool{Size: size, Connect: f.s.Connect, Connections: f.s.Store, Logger: slog.New(slog.DiscardHandler), Check: 100 * time.Millisecond}
	m := &run.Manager{Connect: f.s.Connect, Store: f.s.Store, Logger: slog.New(slog.DiscardHandler), Lease: -1, Pool: p}
	stop := p.Start(context.Background())
	b.Cleanup(func() {
		m.Close()
		stop()
	})
	return m, p
}

// startToFirstByte starts a run with m, fetches the private app's first
// byte through its proxy and ends the run; it returns the time from
// Start to the first byte.
func (f *fixture) startToFirstByte(b *testing.B, m *run.Manager) (time.Duration, run.Info) {
	ctx := context.Background()
	start := time.Now()
	info, err := m.Start(ctx, f.org, "bench", run.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := measure.FirstByteVia(info.ProxyAddr, sandbox.DemoAppName); err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	m.End(ctx, f.org, info.ID, "bench")
	return d, info
}

// BenchmarkRunStartToFirstByte: 50 runs, one after another, each from
// Start to the first byte of the private app through the run's proxy;
// then, in the same run, 50 runs of the same environment from a warm pool
// of 2 (pool-*: the pool is let refill before each, untimed, so every
// start is a hit, counted in pool-hits). Baseline: a direct loopback
// request to the same handler.
func BenchmarkRunStartToFirstByte(b *testing.B) {
	f := setup(b)
	pm, pool := f.pooled(b, 2)
	direct := httptest.NewServer(sandbox.DemoApp("direct"))
	defer direct.Close()
	for b.Loop() {
		var lat, warm, pooled, base []time.Duration
		for range 50 {
			d, info := f.startToFirstByte(b, f.m)
			lat = append(lat, d)
			warm = append(warm, time.Duration(info.WarmMS*float64(time.Millisecond)))

			start := time.Now()
			resp, err := http.Get(direct.URL)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			base = append(base, time.Since(start))
		}
		hits := pool.Stats().Hits
		for range 50 {
			for deadline := time.Now().Add(time.Minute); pool.Ready(f.org, "bench") < pool.Size; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("the warm pool did not refill within a minute")
				}
			}
			d, _ := f.startToFirstByte(b, pm)
			pooled = append(pooled, d)
		}
		measure.ReportP50P95(b, "start-first-byte", lat)
		measure.ReportP50P95(b, "pool-start-first-byte", pooled)
		b.ReportMetric(float64(pool.Stats().Hits-hits), "pool-hits")
		b.ReportMetric(measure.PercentileMS(warm, .5), "warm-p50-ms")
		b.ReportMetric(measure.PercentileMS(base, .5), "direct-p50-ms")
		b.ReportMetric(float64(measure.Percentile(lat, .5))/float64(measure.Percentile(base, .5)), "p50-ratio-to-direct")
	}
}

// BenchmarkConcurrentRuns starts BENCH_RUNS runs at once (8 starting at a
// time) and reports resident memory per open run and start latency under
// that load.
func BenchmarkConcurrentRuns(b *testing.B) {
	count := measure.Count("BENCH_RUNS", 100)
	f := setup(b)
	ctx := context.Background()
	for b.Loop() {
		runtime.GC()
		before := measure.RSSBytes()
		heapBefore := measure.HeapBytes()
		lat := make([]time.Duration, count)
		infos := make([]run.Info, count)
		sem := make(chan struct{}, 8)
		var wg sync.WaitGroup
		for i := range count {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				start := time.Now()
				info, err := f.m.Start(ctx, f.org, "bench", run.Options{})
				if err != nil {
					b.Error(err)
					return
				}
				if err := measure.FirstByteVia(info.ProxyAddr, sandbox.DemoAppName); err != nil {
					b.Error(err)
				}
				lat[i], infos[i] = time.Since(start), info
			})
		}
		wg.Wait()
		runtime.GC()
		after := measure.RSSBytes()
		heapAfter := measure.HeapBytes()
		b.ReportMetric(float64(after-before)/float64(count)/(1<<20), "MB-RSS-per-run")
		b.ReportMetric(float64(heapAfter-heapBefore)/float64(count)/(1<<20), "MB-heap-per-run")
		measure.ReportP50P95(b, "start", lat)
		b.ReportMetric(float64(count), "runs")
		for _, info := range infos {
			f.m.End(ctx, f.org, info.ID, "bench")
		}
	}
}
