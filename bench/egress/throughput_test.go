// Package egress_bench measures the per-run egress proxy.
//
//	go test -run '^$' -bench ProxyThroughput -benchtime 1x ./bench/egress/
//
// Each iteration moves 1 GiB over one TCP stream twice in the same run:
// directly over loopback to a sink, and through the proxy (HTTP CONNECT,
// fake tailnet dialer to the same sink). It reports both rates and their
// ratio (proxy/direct; 1.0 means the proxy costs nothing).
package egress_bench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/egress/egresstest"
	"github.com/tailgate-dev/tailgate/internal/testtcp"
)

const streamBytes = 1 << 30

// sink reads a stream to EOF and answers with the byte count it saw.
func sink(b *testing.B) string {
	return testtcp.Serve(b, func(c net.Conn) {
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		binary.Write(c, binary.BigEndian, n)
	})
}

// send writes streamBytes on c, half-closes, and checks the sink's count.
func send(b *testing.B, c net.Conn, r io.Reader) time.Duration {
	buf := make([]byte, 256<<10)
	start := time.Now()
	for sent := 0; sent < streamBytes; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			b.Fatalf("write after %d bytes: %v", sent, err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	var n int64
	if err := binary.Read(r, binary.BigEndian, &n); err != nil || n != streamBytes {
		b.Fatalf("sink saw %d bytes (%v); want %d", n, err, streamBytes)
	}
	return time.Since(start)
}

func BenchmarkProxyThroughput(b *testing.B) {
	for _, idle := range []time.Duration{0, time.Minute} {
		name := "connect"
		if idle > 0 {
			name = "connect-with-idle-timeout"
		}
		b.Run(name, func(b *testing.B) { benchThroughput(b, idle) })
	}
}

func benchThroughput(b *testing.B, idle time.Duration) {
	to := sink(b)
	tn := egresstest.New()
	tn.AddName("sink.internal.example", netip.MustParseAddr("100.64.0.9"))
	tn.Route(netip.MustParseAddrPort("100.64.0.9:9"), to)
	_, addr := egresstest.StartProxy(b, egress.Options{
		Targets:     []target.Target{{Host: "sink.internal.example", Port: 9}},
		Resolver:    tn,
		Dialer:      tn,
		IdleTimeout: idle,
	})

	var direct, proxied time.Duration
	b.SetBytes(streamBytes)
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", to)
		if err != nil {
			b.Fatal(err)
		}
		direct += send(b, c, c)
		c.Close()

		c, err = net.Dial("tcp", addr.String())
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(c, "CONNECT sink.internal.example:9 HTTP/1.1\r\nHost: sink.internal.example:9\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("CONNECT: %v %v", resp, err)
		}
		proxied += send(b, c, br)
		c.Close()
	}
	b.StopTimer()
	mib := float64(streamBytes) / (1 << 20) * float64(b.N)
	b.ReportMetric(mib/direct.Seconds(), "direct-MiB/s")
	b.ReportMetric(mib/proxied.Seconds(), "proxy-MiB/s")
	b.ReportMetric(direct.Seconds()/proxied.Seconds(), "proxy/direct")
}
