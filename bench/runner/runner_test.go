// Package runner_bench measures a run's start to the first byte of the
// private app through its proxy, with the node on the runner's host (the
// runner library joins with the run's single-use key) and with the node
// on the server, in the same run, on the sandbox tailnet:
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/runner/
//
// BENCH_STARTS sets the starts per placement (default 20), alternating.
package runner_bench

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/bench/measure"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tailgatetest"
	"github.com/tailgate-dev/tailgate/internal/testhttp"
	"github.com/tailgate-dev/tailgate/pkg/runner"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

func firstByte(b *testing.B, proxyURL string) {
	c := testhttp.ThroughProxy(b, proxyURL)
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + sandbox.DemoAppName + "/")
	if err != nil {
		b.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 1))
	resp.Body.Close()
}

func BenchmarkStartToFirstByte(b *testing.B) {
	s := tailgatetest.New(b, sandboxtest.Shared(b))
	s.ConnectEnv(b, "web", sandbox.DemoAppName+":80")
	m := &run.Manager{Connect: s.Connect, Store: s.Store}
	b.Cleanup(m.Close)
	srv := httptest.NewServer(api.New(api.Options{Store: s.Store, PrivateNetwork: s.Connect, Runs: m}))
	b.Cleanup(srv.Close)
	c := &runner.Client{Server: srv.URL, Token: s.Runner}
	n := measure.Count("BENCH_STARTS", 20)
	for range b.N {
		times := map[bool][]time.Duration{}
		for range n {
			for _, onServer := range []bool{false, true} {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				start := time.Now()
				r, err := c.Start(ctx, "web", runner.Options{OnServer: onServer})
				if err != nil {
					b.Fatal(err)
				}
				firstByte(b, r.ProxyURL)
				times[onServer] = append(times[onServer], time.Since(start))
				r.End(ctx)
				cancel()
			}
		}
		measure.ReportP50P95(b, "runner", times[false])
		measure.ReportP50P95(b, "server", times[true])
		b.ReportMetric(measure.PercentileMS(times[false], 0.5)/measure.PercentileMS(times[true], 0.5), "runner/server-p50")
	}
}
