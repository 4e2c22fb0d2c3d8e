package egress_bench

// The network jail's cost (package jail), measured with one client program
// started twice per iteration, in the jail and outside it:
//
//	go test -run '^$' -bench Jail -benchtime 1x ./bench/egress/
//
// BenchmarkJailThroughput moves 1 GiB through the run proxy by CONNECT
// from each; the jail adds a relay hop over a Unix socket.
// BenchmarkJailFirstByte times a command from start to the first byte of
// an HTTP answer through the proxy (BENCH_JAIL_STARTS times each); the
// jail adds its keeper's start, namespace setup and the relay.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/bench/measure"

	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/egress/egresstest"
	"github.com/tailgate-dev/tailgate/internal/jail"
)

// TestMain makes this binary the benchmark's client when started as one.
func TestMain(m *testing.M) {
	switch os.Getenv("BENCH_EGRESS_CLIENT") {
	case "stream":
		os.Exit(clientStream(os.Getenv("BENCH_PROXY")))
	case "get":
		os.Exit(clientGet(os.Getenv("BENCH_PROXY")))
	}
	os.Exit(m.Run())
}

// clientStream sends streamBytes through the proxy and prints how long it
// took, in nanoseconds.
func clientStream(proxy string) int {
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT sink.internal.example:9 HTTP/1.1\r\nHost: sink.internal.example:9\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		fmt.Fprintln(os.Stderr, "CONNECT:", resp, err)
		return 1
	}
	buf := make([]byte, 256<<10)
	start := time.Now()
	for sent := 0; sent < streamBytes; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	c.(*net.TCPConn).CloseWrite()
	var n [8]byte
	if _, err := io.ReadFull(br, n[:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(time.Since(start).Nanoseconds())
	return 0
}

// clientGet fetches the web target through the proxy and exits at its
// first byte.
func clientGet(proxy string) int {
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	fmt.Fprintf(c, "GET http://web.internal.example/ HTTP/1.1\r\nHost: web.internal.example\r\nConnection: close\r\n\r\n")
	if _, err := c.Read(make([]byte, 1)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// jailBench is a run proxy with a stream sink and a web page behind it.
type jailBench struct {
	proxy netip.AddrPort
	jail  *jail.Jail
}

func newJailBench(b *testing.B) *jailBench {
	to := sink(b)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	b.Cleanup(web.Close)
	tn := egresstest.New()
	tn.AddName("sink.internal.example", netip.MustParseAddr("100.64.0.9"))
	tn.Route(netip.MustParseAddrPort("100.64.0.9:9"), to)
	tn.AddName("web.internal.example", netip.MustParseAddr("100.64.0.10"))
	tn.Route(netip.MustParseAddrPort("100.64.0.10:80"), web.Listener.Addr().String())
	_, addr := egresstest.StartProxy(b, egress.Options{
		Targets:  []target.Target{{Host: "sink.internal.example", Port: 9}, {Host: "web.internal.example", Port: 80}},
		Resolver: tn,
		Dialer:   tn,
	})
	j, err := jail.New(jail.Options{Mode: jail.ModeRequired, Forward: []netip.AddrPort{addr}})
	if err != nil {
		b.Skipf("skipping: %v", err)
	}
	b.Cleanup(func() { j.Close() })
	return &jailBench{proxy: addr, jail: j}
}

// client returns the client command, jailed or not.
func (jb *jailBench) client(b *testing.B, mode string, jailed bool) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "BENCH_EGRESS_CLIENT="+mode, "BENCH_PROXY="+jb.proxy.String())
	cmd.Stderr = os.Stderr
	if jailed {
		jb.jail.Wrap(cmd)
	}
	return cmd
}

func BenchmarkJailThroughput(b *testing.B) {
	jb := newJailBench(b)
	var outside, inside time.Duration
	b.SetBytes(streamBytes)
	for range b.N {
		for _, jailed := range []bool{false, true} {
			out, err := jb.client(b, "stream", jailed).Output()
			if err != nil {
				b.Fatalf("client (jailed %v): %v", jailed, err)
			}
			ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			if err != nil {
				b.Fatalf("client output %q", out)
			}
			if jailed {
				inside += time.Duration(ns)
			} else {
				outside += time.Duration(ns)
			}
		}
	}
	mib := float64(streamBytes) / (1 << 20) * float64(b.N)
	b.ReportMetric(mib/outside.Seconds(), "outside-MiB/s")
	b.ReportMetric(mib/inside.Seconds(), "jail-MiB/s")
	b.ReportMetric(outside.Seconds()/inside.Seconds(), "jail/outside")
}

func BenchmarkJailFirstByte(b *testing.B) {
	jb := newJailBench(b)
	n := measure.Count("BENCH_JAIL_STARTS", 30)
	for range b.N {
		times := map[bool][]time.Duration{}
		for range n {
			for _, jailed := range []bool{false, true} {
				cmd := jb.client(b, "get", jailed)
				start := time.Now()
				if err := cmd.Run(); err != nil {
					b.Fatalf("client (jailed %v): %v", jailed, err)
				}
				times[jailed] = append(times[jailed], time.Since(start))
			}
		}
		measure.ReportP50P95(b, "outside", times[false])
		measure.ReportP50P95(b, "jail", times[true])
		b.ReportMetric(measure.PercentileMS(times[true], 0.5)/measure.PercentileMS(times[false], 0.5), "jail/outside-p50")
	}
}
