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
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

// firstByte sends a GET over c and waits for the first byte of the answer.
func firstByte(c net.Conn) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")); err != nil {
		return err
	}
	_, err := bufio.NewReader(c).ReadByte()
	return err
}

func startSandbox(b *testing.B) *sandbox.Sandbox {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sb.Close() })
	return sb
}

// BenchmarkJoinToFirstByte: a fresh ephemeral node joins, accepts routes,
// and fetches the first byte of the subnet-routed demo app; 50 joins.
func BenchmarkJoinToFirstByte(b *testing.B) {
	sb := startSandbox(b)
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
				err = firstByte(c)
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
				err = firstByte(dc)
			}
			if err != nil {
				b.Fatal(err)
			}
			baseline = append(baseline, time.Since(start))
		}
		p50, p95 := percentile(viaTailnet, .5), percentile(viaTailnet, .95)
		b.ReportMetric(float64(p50.Microseconds())/1000, "join-first-byte-p50-ms")
		b.ReportMetric(float64(p95.Microseconds())/1000, "join-first-byte-p95-ms")
		b.ReportMetric(float64(percentile(baseline, .5).Microseconds())/1000, "direct-first-byte-p50-ms")
		b.ReportMetric(float64(p50)/float64(percentile(baseline, .5)), "p50-ratio-to-direct")
	}
}

func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	fmt.Sscan(string(b), &size, &resident)
	return resident * int64(os.Getpagesize())
}

// BenchmarkIdleNodeMemory joins BENCH_NODES (default 100) idle ephemeral
// nodes in this process and reports resident memory per node. On the
// sandbox every node peers with every other (testcontrol allows all), so
// the cost grows with the square of the count; a tailnet with grants keeps
// runners of one environment from peering.
func BenchmarkIdleNodeMemory(b *testing.B) {
	count := 100
	if v, err := strconv.Atoi(os.Getenv("BENCH_NODES")); err == nil && v > 0 {
		count = v
	}
	sb := startSandbox(b)
	for b.Loop() {
		runtime.GC()
		before := rssBytes()
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
		after := rssBytes()
		b.ReportMetric(float64(after-before)/float64(count)/(1<<20), "MB-RSS-per-idle-node")
		b.ReportMetric(float64(after)/(1<<20), "MB-RSS-total")
		b.ReportMetric(float64(percentile(joinTimes, .5).Milliseconds()), "join-p50-ms")
		b.ReportMetric(float64(percentile(joinTimes, .95).Milliseconds()), "join-p95-ms")
		b.ReportMetric(float64(count), "nodes")
		for _, n := range nodes {
			n.Close()
		}
	}
	_ = http.StatusOK
}
