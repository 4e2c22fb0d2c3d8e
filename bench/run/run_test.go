// Package run_test benchmarks runs on the sandbox tailnet: run start → first
// byte of the private app through the run's proxy, and many concurrent runs
// in one process. Run with
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/run/
//
// BENCH_RUNS sets the concurrent run count (default 100). On the sandbox
// every node peers with every other (testcontrol allows all), so memory
// grows with the square of the count; with grants (Tailscale, headscale)
// runners of one environment do not peer.
package run_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type fixture struct {
	m   *run.Manager
	org string
}

func setup(b *testing.B) *fixture {
	ctx := context.Background()
	sb, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sb.Close() })
	dir := b.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	kr, _ := vault.LoadOrCreateKeyFile(filepath.Join(dir, "key"))
	org, _ := st.CreateOrg(ctx, "bench")
	st.CreateEnvironment(ctx, org.ID, "bench")
	svc := &connect.Service{Store: st, Vault: kr, APIBaseURL: sb.APIURL(), ControlURL: sb.ControlURL()}
	if _, err := svc.Connect(ctx, connect.Request{OrgID: org.ID, Env: "bench", APIToken: sb.NewAPIToken(),
		Targets: []string{sandbox.DemoAppName + ":80"}}); err != nil {
		b.Fatal(err)
	}
	m := &run.Manager{Connect: svc, Store: st, Logger: slog.New(slog.DiscardHandler), Lease: -1}
	b.Cleanup(m.Close)
	return &fixture{m: m, org: org.ID}
}

// firstByteVia sends a proxied GET to the demo app and waits for the first
// byte of the answer.
func firstByteVia(proxyAddr string) error {
	c, err := net.DialTimeout("tcp", proxyAddr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sandbox.DemoAppName, sandbox.DemoAppName)
	_, err = bufio.NewReader(c).ReadByte()
	return err
}

// BenchmarkRunStartToFirstByte: 50 runs, one after another, each from
// Start to the first byte of the private app through the run's proxy.
// Baseline: a direct loopback request to the same handler.
func BenchmarkRunStartToFirstByte(b *testing.B) {
	f := setup(b)
	direct := httptest.NewServer(sandbox.DemoApp("direct"))
	defer direct.Close()
	ctx := context.Background()
	for b.Loop() {
		var lat, warm, base []time.Duration
		for range 50 {
			start := time.Now()
			info, err := f.m.Start(ctx, f.org, "bench", run.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if err := firstByteVia(info.ProxyAddr); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			warm = append(warm, time.Duration(info.WarmMS*float64(time.Millisecond)))
			f.m.End(ctx, f.org, info.ID, "bench")

			start = time.Now()
			resp, err := http.Get(direct.URL)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			base = append(base, time.Since(start))
		}
		b.ReportMetric(ms(percentile(lat, .5)), "start-first-byte-p50-ms")
		b.ReportMetric(ms(percentile(lat, .95)), "start-first-byte-p95-ms")
		b.ReportMetric(ms(percentile(warm, .5)), "warm-p50-ms")
		b.ReportMetric(ms(percentile(base, .5)), "direct-p50-ms")
		b.ReportMetric(float64(percentile(lat, .5))/float64(percentile(base, .5)), "p50-ratio-to-direct")
	}
}

func rssBytes() int64 {
	b, _ := os.ReadFile("/proc/self/statm")
	var size, resident int64
	fmt.Sscan(string(b), &size, &resident)
	return resident * int64(os.Getpagesize())
}

// BenchmarkConcurrentRuns starts BENCH_RUNS runs at once (8 starting at a
// time) and reports resident memory per open run and start latency under
// that load.
func BenchmarkConcurrentRuns(b *testing.B) {
	count := 100
	if v, err := strconv.Atoi(os.Getenv("BENCH_RUNS")); err == nil && v > 0 {
		count = v
	}
	f := setup(b)
	ctx := context.Background()
	for b.Loop() {
		runtime.GC()
		before := rssBytes()
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
				if err := firstByteVia(info.ProxyAddr); err != nil {
					b.Error(err)
				}
				lat[i], infos[i] = time.Since(start), info
			})
		}
		wg.Wait()
		runtime.GC()
		after := rssBytes()
		b.ReportMetric(float64(after-before)/float64(count)/(1<<20), "MB-RSS-per-run")
		b.ReportMetric(ms(percentile(lat, .5)), "start-p50-ms")
		b.ReportMetric(ms(percentile(lat, .95)), "start-p95-ms")
		b.ReportMetric(float64(count), "runs")
		for _, info := range infos {
			f.m.End(ctx, f.org, info.ID, "bench")
		}
	}
}
