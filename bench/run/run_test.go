// Package run_test benchmarks runs on the sandbox tailnet: run start → first
// byte of the private app through the run's proxy, and many concurrent runs
// in one process. Run with
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/run/
//
// BenchmarkRunStartToFirstByte measures runs that join when they start
// and runs that take a node from a warm pool (serve --warm-pool), in the
// same run, one after the other.
//
// BenchmarkConcurrentRuns opens BENCH_RUNS runs at once (default 100) and
// reports what each costs in memory. The sandbox tailnet (control server,
// DERP, the subnet router every run peers with) runs in a child process,
// as a customer's control plane and router live outside tailgate serve:
// the run-proc figures are the benchmark process alone (run nodes,
// proxies, tailgate's bookkeeping), the control-proc figures the child's
// growth with the runs, and both-MB-RSS-per-run their sum, the scope of
// earlier reports' MB-RSS-per-run, when the sandbox ran in the same
// process (BENCH_SANDBOX=inprocess still measures that way and reports
// inproc-MB-RSS-per-run). Memory is reported two ways: resident memory,
// and live heap after a full GC (the measure of Tailscale's
// tstest/membudget). Each node's live heap includes wireguard-go's
// receive batches, 4 × 128 buffers of 64 KiB (32 MiB) preallocated on
// Linux and mostly never touched, so it exceeds RSS;
// run-proc-MB-heap-per-run-excl-wg-batches leaves them out. Once the runs
// are open, each fetches the private app BENCH_FETCHES times (default 20)
// and resident memory is read again without a forced collection
// (*-after-traffic). BENCH_PROFILE_DIR writes heap profiles of both
// processes before and after the runs open; -v logs where resident memory
// goes besides live objects. BENCH_CONTROL=headscale measures on headscale
// instead (a subprocess, hs-headscale-proc-*), whose subnet router runs in
// the benchmark's process (hs-run-and-router-proc-*).
//
// The benchmark's sandbox holds a customer policy with no allow-all rule
// (the sandbox enforces grants), so runners of one environment do not
// peer, as on Tailscale and headscale, and memory per run does not grow
// with the square of the count.
package run_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/bench/measure"
	"github.com/tailgate-dev/tailgate/bench/sandboxproc"
	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/heapreturn"
	"github.com/tailgate-dev/tailgate/internal/hstest"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tailgatetest"
)

func TestMain(m *testing.M) {
	sandboxproc.Child()
	measure.ProfileDir()
	sandboxtest.Main(m)
}

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

// setupRemote is setup with the sandbox in a child process.
func setupRemote(b *testing.B) (*fixture, *sandboxproc.Proc) {
	p := sandboxproc.Start(b, customerPolicy)
	s := tailgatetest.NewOn(b, nil, "")
	s.Connect.APIBaseURL, s.Connect.ControlURL = p.APIURL, p.ControlURL
	s.Env(b, "bench")
	ctx := tailgatetest.Ctx(b, 2*time.Minute)
	req := connect.Request{OrgID: s.Org, Env: "bench", APIToken: p.APIToken, Targets: []string{sandbox.DemoAppName + ":80"}}
	if _, err := s.Connect.Connect(ctx, req); err != nil {
		b.Fatalf("connect: %v", err)
	}
	b.Cleanup(func() { s.Connect.Disconnect(context.Background(), s.Org, "bench", p.APIToken) })
	m := &run.Manager{Connect: s.Connect, Store: s.Store, Logger: slog.New(slog.DiscardHandler), Lease: -1}
	b.Cleanup(m.Close)
	return &fixture{m: m, s: s, org: s.Org}, p
}

// setupHeadscale is setup on headscale (a subprocess; its subnet router
// serves a private app from this process), for BENCH_CONTROL=headscale.
func setupHeadscale(b *testing.B) (*fixture, *hstest.Server, string) {
	hs := hstest.Start(b, hstest.Options{})
	app := netip.MustParseAddrPort("192.0.2.10:80")
	hs.ServeApp(app, sandbox.DemoApp("headscale"))
	if err := hs.ApproveRouterSubnet(context.Background()); err != nil {
		b.Fatal(err)
	}
	s := tailgatetest.New(b, nil)
	s.Connect.ControlURL = hs.URL
	s.ConnectHeadscaleEnv(b, hs.URL, hs.APIKey, "bench", app.String())
	m := &run.Manager{Connect: s.Connect, Store: s.Store, Logger: slog.New(slog.DiscardHandler), Lease: -1}
	b.Cleanup(m.Close)
	return &fixture{m: m, s: s, org: s.Org}, hs, app.String()
}

// wgBatchBytes is what wireguard-go preallocates per node on Linux for
// its receive batches: IdealBatchSize (128) message buffers of 64 KiB − 1
// for each of magicsock's three receive paths and the TUN reader. They
// count as live heap but are touched only as far as packets fill them.
const wgBatchBytes = 4 * 128 * 65535

// memory is one process's resident memory and live heap.
type memory struct{ rss, heap int64 }

// BenchmarkConcurrentRuns starts BENCH_RUNS runs at once (8 starting at a
// time) and reports memory per open run, in the benchmark's process and
// in the sandbox's, and start latency under that load.
func BenchmarkConcurrentRuns(b *testing.B) {
	count := measure.Count("BENCH_RUNS", 100)
	inproc := os.Getenv("BENCH_SANDBOX") == "inprocess"
	var f *fixture
	var ctl *sandboxproc.Proc
	var hs *hstest.Server
	target := sandbox.DemoAppName
	switch {
	case os.Getenv("BENCH_CONTROL") == "headscale":
		f, hs, target = setupHeadscale(b)
	case inproc:
		f = setup(b)
	default:
		f, ctl = setupRemote(b)
	}
	dir := measure.ProfileDir()
	// As tailgate serve does unless --heap-return-mib 0: give freed heap
	// back to the OS (package heapreturn). BENCH_HEAP_RETURN=0 leaves it
	// off, to measure what it saves.
	returning := os.Getenv("BENCH_HEAP_RETURN") != "0"
	if returning {
		ctx, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		go heapreturn.Run(ctx, heapreturn.DefaultThreshold)
	}
	// snapshot measures both processes after a full GC, writing heap
	// profiles named for when.
	snapshot := func(when string) (self, control memory) {
		// A collection, then a pause of one heap-return check and a bit,
		// with or without heap return, so that it has had its chance.
		runtime.GC()
		time.Sleep(heapreturn.CheckEvery + time.Second)
		self = memory{rss: measure.RSSBytes(), heap: measure.HeapBytes()}
		// Where resident memory goes besides live objects, for -v.
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.Logf("%s: RSS %d MiB, live heap %d MiB, idle heap not returned %d MiB, stacks %d MiB (%d goroutines), span and GC metadata %d MiB, GC cycles %d",
			when, self.rss>>20, ms.HeapAlloc>>20, (ms.HeapIdle-ms.HeapReleased)>>20, ms.StackInuse>>20, runtime.NumGoroutine(), (ms.MSpanInuse+ms.GCSys)>>20, ms.NumGC)
		if err := measure.WriteHeapProfile(dir, "run-"+when+".pb.gz"); err != nil {
			b.Fatal(err)
		}
		if ctl != nil {
			prof := ""
			if dir != "" {
				prof = filepath.Join(dir, "control-"+when+".pb.gz")
			}
			control = memory{heap: ctl.HeapBytes(prof), rss: ctl.RSSBytes()}
		}
		if hs != nil {
			control = memory{rss: measure.RSSBytesOf(hs.PID())}
		}
		return self, control
	}
	ctx := context.Background()
	for b.Loop() {
		before, ctlBefore := snapshot("before")
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
				if err := measure.FirstByteVia(info.ProxyAddr, target); err != nil {
					b.Error(err)
				}
				lat[i], infos[i] = time.Since(start), info
			})
		}
		wg.Wait()
		after, ctlAfter := snapshot("after")
		perRun := func(d int64) float64 { return float64(d) / float64(count) / (1 << 20) }
		switch {
		case hs != nil:
			// The router is in this process: its state for each run
			// counts here, as the control's own router did in-process.
			b.ReportMetric(perRun(after.rss-before.rss), "hs-run-and-router-proc-MB-RSS-per-run")
			b.ReportMetric(perRun(after.heap-before.heap-int64(count)*wgBatchBytes), "hs-run-and-router-proc-MB-heap-per-run-excl-wg-batches")
			b.ReportMetric(perRun(ctlAfter.rss-ctlBefore.rss), "hs-headscale-proc-MB-RSS-per-run")
		case inproc:
			b.ReportMetric(perRun(after.rss-before.rss), "inproc-MB-RSS-per-run")
			b.ReportMetric(perRun(after.heap-before.heap), "inproc-MB-heap-per-run")
		default:
			b.ReportMetric(perRun(after.rss-before.rss), "run-proc-MB-RSS-per-run")
			b.ReportMetric(perRun(after.heap-before.heap), "run-proc-MB-heap-per-run")
			b.ReportMetric(perRun(after.heap-before.heap-int64(count)*wgBatchBytes), "run-proc-MB-heap-per-run-excl-wg-batches")
			b.ReportMetric(perRun(ctlAfter.rss-ctlBefore.rss), "control-proc-MB-RSS-per-run")
			b.ReportMetric(perRun(ctlAfter.heap-ctlBefore.heap), "control-proc-MB-heap-per-run")
			b.ReportMetric(perRun(after.rss-before.rss+ctlAfter.rss-ctlBefore.rss), "both-MB-RSS-per-run")
		}
		measure.ReportP50P95(b, "start", lat)
		// How many starts were slow, and which part of the slowest was:
		// the join, or warming the path (a WireGuard handshake the
		// router dropped is retried only after 5 s).
		var join, warm []time.Duration
		slow := 0
		for i, info := range infos {
			join = append(join, time.Duration(info.JoinMS*float64(time.Millisecond)))
			warm = append(warm, time.Duration(info.WarmMS*float64(time.Millisecond)))
			if lat[i] > time.Second {
				slow++
			}
		}
		b.ReportMetric(float64(slow), "starts-over-1s")
		b.ReportMetric(measure.PercentileMS(join, 1), "join-max-ms")
		b.ReportMetric(measure.PercentileMS(warm, 1), "warm-max-ms")
		b.ReportMetric(float64(count), "runs")
		if returning {
			b.ReportMetric(1, "heap-return-on")
		} else {
			b.ReportMetric(0, "heap-return-on")
		}
		// Then traffic, as a browser makes it: every run fetches the
		// page fetches times over new connections, 8 runs at a time,
		// and resident memory is read as it stands, without a forced
		// collection: what the garbage collector's pacing lets pile up.
		fetches := measure.Count("BENCH_FETCHES", 20)
		var fetchLat []time.Duration
		var fetchMu sync.Mutex
		for _, info := range infos {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				for range fetches {
					start := time.Now()
					if err := measure.FirstByteVia(info.ProxyAddr, target); err != nil {
						b.Error(err)
						return
					}
					fetchMu.Lock()
					fetchLat = append(fetchLat, time.Since(start))
					fetchMu.Unlock()
				}
			})
		}
		wg.Wait()
		loaded := measure.RSSBytes()
		measure.ReportP50P95(b, "fetch", fetchLat)
		switch {
		case hs != nil:
			b.ReportMetric(perRun(loaded-before.rss), "hs-run-and-router-proc-MB-RSS-per-run-after-traffic")
		case inproc:
			b.ReportMetric(perRun(loaded-before.rss), "inproc-MB-RSS-per-run-after-traffic")
		default:
			b.ReportMetric(perRun(loaded-before.rss), "run-proc-MB-RSS-per-run-after-traffic")
		}
		for _, info := range infos {
			f.m.End(ctx, f.org, info.ID, "bench")
		}
	}
}
