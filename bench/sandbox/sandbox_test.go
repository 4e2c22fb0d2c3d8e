// Package sandbox_test benchmarks the embedded tailnet: how long a new node
// takes from join to the first byte of a private app, and what an idle
// node costs in memory. Run with
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/sandbox/
//
// Figures are reported beside a baseline measured in the same run: a direct
// loopback HTTP request to the same app handler.
package sandbox_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/bench/measure"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// BenchmarkJoinToFirstByte: a fresh ephemeral node joins, accepts routes,
// and fetches the first byte of the subnet-routed demo app; 50 joins.
func BenchmarkJoinToFirstByte(b *testing.B) {
	sb := sandboxtest.Shared(b)
	direct := httptest.NewServer(sandbox.DemoApp("direct"))
	defer direct.Close()
	const joins = 50
	for b.Loop() {
		var viaTailnet, baseline []time.Duration
		for i := range joins {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			start := time.Now()
			n, err := sb.NewNode(ctx, sandbox.NodeOptions{Hostname: fmt.Sprintf("bench-%d", i), AcceptRoutes: true})
			if err != nil {
				b.Fatal(err)
			}
			c, err := n.DialTCP(ctx, netip.AddrPortFrom(sandbox.DemoAppIP, 80))
			if err == nil {
				err = measure.FirstByte(c, sandbox.DemoAppName)
			}
			if err != nil {
				b.Fatal(err)
			}
			viaTailnet = append(viaTailnet, time.Since(start))
			n.Close()
			cancel()

			start = time.Now()
			dc, err := net.Dial("tcp", direct.Listener.Addr().String())
			if err == nil {
				err = measure.FirstByte(dc, sandbox.DemoAppName)
			}
			if err != nil {
				b.Fatal(err)
			}
			baseline = append(baseline, time.Since(start))
		}
		measure.ReportP50P95(b, "join-first-byte", viaTailnet)
		b.ReportMetric(measure.PercentileMS(baseline, .5), "direct-first-byte-p50-ms")
		b.ReportMetric(float64(measure.Percentile(viaTailnet, .5))/float64(measure.Percentile(baseline, .5)), "p50-ratio-to-direct")
	}
}

// BenchmarkIdleNodeMemory joins BENCH_NODES (default 100) idle ephemeral
// nodes in this process and reports resident memory per node. On the
// sandbox every node peers with every other (testcontrol allows all), so
// the cost grows with the square of the count; a tailnet with grants keeps
// runners of one environment from peering.
func BenchmarkIdleNodeMemory(b *testing.B) {
	count := measure.Count("BENCH_NODES", 100)
	sb := sandboxtest.Shared(b)
	for b.Loop() {
		runtime.GC()
		before := measure.RSSBytes()
		heapBefore := measure.HeapBytes()
		var nodes []*tailnet.Node
		var joinTimes []time.Duration
		for i := range count {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			start := time.Now()
			n, err := sb.NewNode(ctx, sandbox.NodeOptions{Hostname: fmt.Sprintf("idle-%d", i)})
			cancel()
			if err != nil {
				b.Fatalf("node %d: %v", i, err)
			}
			joinTimes = append(joinTimes, time.Since(start))
			nodes = append(nodes, n)
		}
		time.Sleep(5 * time.Second) // let netmaps settle
		runtime.GC()
		after := measure.RSSBytes()
		heapAfter := measure.HeapBytes()
		b.ReportMetric(float64(heapAfter-heapBefore)/float64(count)/(1<<20), "MB-heap-per-idle-node")
		b.ReportMetric(float64(after-before)/float64(count)/(1<<20), "MB-RSS-per-idle-node")
		b.ReportMetric(float64(after)/(1<<20), "MB-RSS-total")
		measure.ReportP50P95(b, "join", joinTimes)
		b.ReportMetric(float64(count), "nodes")
		for _, n := range nodes {
			n.Close()
		}
	}
}
