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
	"runtime/debug"
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
// runner nodes of one environment (tag:tailgate-bench) in this process and
// reports resident memory and live heap per node, on a sandbox of its own:
//
//   - allow-all: testcontrol's own behaviour (Options.AllowAll), every
//     node peers with every other, so the cost grows with the square of
//     the count;
//   - grants: a policy that grants the runners the demo app only, as
//     tailgate writes it; runners then peer with the router alone.
//
// RSS is process-wide and rarely shrinks, so run one case per process for
// clean figures: -bench 'IdleNodeMemory/grants'.
func BenchmarkIdleNodeMemory(b *testing.B) {
	b.Run("allow-all", func(b *testing.B) { idleNodeMemory(b, sandbox.Options{AllowAll: true}, "") })
	b.Run("grants", func(b *testing.B) { idleNodeMemory(b, sandbox.Options{}, runnerPolicy) })
}

// runnerPolicy grants the benchmark's runners the demo app behind the
// router, and nothing else.
const runnerPolicy = `{
	"tagOwners": {"tag:tailgate-bench": ["autogroup:admin"]},
	"grants": [{"src": ["tag:tailgate-bench"], "dst": ["192.0.2.10"], "ip": ["tcp:80"]}],
}`

func idleNodeMemory(b *testing.B, opts sandbox.Options, policy string) {
	count := measure.Count("BENCH_NODES", 100)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	sb, err := sandbox.Start(ctx, opts)
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close()
	if policy != "" {
		sb.API().SetPolicy([]byte(policy))
	}
	for b.Loop() {
		runtime.GC()
		debug.FreeOSMemory()
		before := measure.RSSBytes()
		heapBefore := measure.HeapBytes()
		var nodes []*tailnet.Node
		var joinTimes []time.Duration
		for i := range count {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			start := time.Now()
			n, err := sb.NewNode(ctx, sandbox.NodeOptions{Hostname: fmt.Sprintf("idle-%d", i), Tags: []string{"tag:tailgate-bench"}})
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
