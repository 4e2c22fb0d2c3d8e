// Package mcp_bench measures the gateway's MCP backend.
//
//		go test -run '^$' -bench . -benchtime 1x ./bench/mcp/
//
//	  - ToolCall: tools/call p50/p99 through the gateway (Go SDK client →
//	    streamable HTTP → gateway → stdio target) against two baselines: a
//	    Go SDK client talking to the same stdio server directly (direct-*),
//	    and the same Go SDK server served in-process by the SDK's own
//	    streamable HTTP handler (http-*), which is the HTTP transport's
//	    share. The gateway is measured twice: in its own process, as users
//	    run it (proc-gateway-*; proc-p50-ratio and proc-p99-ratio to
//	    direct), and in the benchmark's process (gateway-*; p50-ratio and
//	    p99-ratio to direct), where it shares one heap and garbage
//	    collector with the SDK client, whose allocations dominate;
//	    gateway-vs-http-* is what the in-process gateway adds on top of
//	    the HTTP transport (its stdio hop included). The fifth leg, relay-*,
//	    is the floor of the gateway's own process: a process that only
//	    passes messages between HTTP and the target's pipe (relay_test.go);
//	    relay-p50-ratio is what such a hop costs over direct stdio on the
//	    machine measured, proc-vs-relay-* what the gateway adds to it. The
//	    sixth, stdio-relay-*, splits that floor: a process that copies
//	    bytes between the client's stdio and the server's, no HTTP, so
//	    stdio-relay-p50-ratio is what one more process costs and
//	    relay-vs-stdio-relay-* what the HTTP hop costs on top. The
//	    legs take turns in blocks of calls, so that every ratio compares
//	    legs that saw the same load.
//	  - SessionStart: initialize latency of a new MCP session when the
//	    stdio target is shared (reuse: true) vs a fresh process per session
//	    (reuse: false).
//	  - RSSAfter1000Sessions: the gateway process's resident memory after
//	    1000 sessions opened and closed (one in-process gateway; the bench
//	    binary itself is the process measured).
//
// The stdio server is this bench binary re-executed (MCPBENCH_SERVER=1),
// a Go SDK server with an echo tool, so no npm package is needed.
package mcp_bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/testtcp"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tailgate-dev/tailgate/bench/measure"
	"github.com/tailgate-dev/tailgate/internal/gateway"
	"github.com/tailgate-dev/tailgate/internal/gcfloor"
)

func TestMain(m *testing.M) {
	if os.Getenv(serverEnv) != "" {
		echoServer().Run(context.Background(), &sdk.StdioTransport{})
		return
	}
	if path := os.Getenv(gatewayEnv); path != "" {
		os.Exit(gatewayChild(path))
	}
	if os.Getenv(stdioRelayEnv) != "" {
		os.Exit(stdioRelayChild())
	}
	if path := os.Getenv(relayEnv); path != "" {
		os.Exit(relayChild(path))
	}
	os.Exit(m.Run())
}

// echoServer is the Go SDK server every ToolCall leg talks to: one tool,
// "echo", that answers its text.
func echoServer() *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "bench", Version: "1"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "echo"}, func(ctx context.Context, _ *sdk.CallToolRequest, a struct {
		Text string `json:"text"`
	}) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: a.Text}}}, nil, nil
	})
	return s
}

func exe() string { e, _ := os.Executable(); return e }

// serverEnv, set, makes this binary the echo server on its stdio.
const serverEnv = "MCPBENCH_SERVER"

// echoServerCmd is this binary as the echo server, in a clean
// environment.
func echoServerCmd() *exec.Cmd { return childCmd(serverEnv) }

// stdioRelayCmd is this binary as the stdio relay (relay_test.go).
func stdioRelayCmd() *exec.Cmd { return childCmd(stdioRelayEnv) }

// childCmd is this binary with role=1 and PATH as its whole environment.
func childCmd(role string) *exec.Cmd {
	cmd := exec.Command(exe())
	cmd.Env = []string{role + "=1", "PATH=" + os.Getenv("PATH")}
	return cmd
}

// connectStdio is a Go SDK client session over the stdio of cmd.
func connectStdio(b *testing.B, cmd *exec.Cmd) *sdk.ClientSession {
	c := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &sdk.CommandTransport{Command: cmd}, &sdk.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		b.Fatal(err)
	}
	return cs
}

// startGateway is a gateway on loopback, in this process, whose one MCP
// route federates the stdio target "bench" (this binary), reused across
// sessions or not.
func startGateway(b *testing.B, reuse bool) string {
	return startGatewayTo(b, stdioTarget(reuse))
}

// stdioTarget is the YAML of the stdio target "bench": this binary as
// the echo server.
func stdioTarget(reuse bool) string {
	return fmt.Sprintf(`
            stdio:
              cmd: %q
              env: {MCPBENCH_SERVER: "1"}
              reuse: %v`, exe(), reuse)
}

// startGatewayTo is a gateway on loopback whose one MCP route federates
// one target "bench", given as the YAML of its kind, and returns the
// route's URL. The gateway runs in this process and is closed when the
// benchmark ends.
func startGatewayTo(b *testing.B, target string) string {
	path, url := gatewayConfig(b, target)
	g, err := gateway.New(gateway.Options{ConfigPath: path, BindHost: "127.0.0.1", AdminAddr: "off", ReloadInterval: -1,
		AccessLog: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	return url
}

// gatewayConfig writes the config of a gateway whose one MCP route, on a
// free loopback port, federates one target "bench" (the YAML of its
// kind), and returns the file and the route's URL.
func gatewayConfig(b *testing.B, target string) (path, url string) {
	port := testtcp.FreePort(b)
	cfg := fmt.Sprintf(`
binds:
- port: %d
  listeners:
  - routes:
    - name: mcp
      backends:
      - mcp:
          targets:
          - name: bench%s
`, port, target)
	path = filepath.Join(b.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	return path, fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
}

// startGatewayProc is startGatewayTo with the gateway in a process of its
// own, as users run it (tailgate gateway -f config.yaml): this binary
// re-executed (MCPBENCH_GATEWAY, see gatewayChild), so its heap and
// garbage collector are not the benchmark's, whose SDK client allocates
// far more per call than the gateway does. Its logs and access log go to
// a file, as a production gateway writes them to its stderr; they are
// shown if it fails. It is stopped (SIGTERM) when the benchmark ends.
// cpu is the CPU time the process has used so far.
func startGatewayProc(b *testing.B, target string) (url string, cpu func() time.Duration) {
	path, url := gatewayConfig(b, target)
	logPath := filepath.Join(filepath.Dir(path), "gateway.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmdCtx, stop := context.WithCancel(context.Background())
	cmd := exec.CommandContext(cmdCtx, exe())
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), gatewayEnv+"="+path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		stop()
		b.Fatal(err)
	}
	cpu = func() time.Duration { return measure.CPUTimeOf(cmd.Process.Pid) }
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() { stop(); <-exited })
	failed := func(why string) {
		log, _ := os.ReadFile(logPath)
		b.Fatalf("gateway process %s; its log:\n%s", why, log)
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/mcp")
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-exited:
			failed("exited before listening")
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return url, cpu
		}
		if time.Now().After(deadline) {
			failed("not listening on " + addr + " after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gatewayEnv, set to a config file, makes this binary a gateway process.
const gatewayEnv = "MCPBENCH_GATEWAY"

// gatewayChild runs the gateway of the config file in gatewayEnv until
// SIGTERM, with the options `tailgate gateway -f FILE --bind-host
// 127.0.0.1` gives it (logs and access log on stderr, config reloads
// watched, the admin endpoints on, here on a free port so runs do not
// collide).
//
// With BENCH_PROFILE_DIR set, it writes its CPU profile, start to stop,
// to mcp-gateway.cpu.pprof there.
func gatewayChild(path string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if dir := os.Getenv(measure.ProfileDirEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, "mcp-gateway.cpu.pprof"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	gcfloor.Run(ctx, gcfloor.DefaultFloor) // as tailgate gateway does by default
	err := gateway.Run(ctx, gateway.Options{ConfigPath: path, BindHost: "127.0.0.1", AdminAddr: "127.0.0.1:0",
		AccessLog: os.Stderr, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func connectHTTP(b *testing.B, url string) *sdk.ClientSession {
	c := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: url, MaxRetries: -1, DisableStandaloneSSE: true},
		&sdk.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		b.Fatal(err)
	}
	return cs
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	return measure.Percentile(d, .5), measure.Percentile(d, .99)
}

func timeCalls(b *testing.B, cs *sdk.ClientSession, n int) []time.Duration {
	out := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(t0))
	}
	return out
}

func BenchmarkToolCall(b *testing.B) {
	const n = 2000
	for i := 0; i < b.N; i++ {
		// Direct: a Go SDK client over stdio to the same server.
		direct := connectStdio(b, echoServerCmd())

		// HTTP: the same server in this process behind the SDK's own
		// streamable HTTP handler, as the gateway serves its clients
		// (in-process, loopback), without the gateway.
		s := echoServer()
		srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))

		// The gateway in this process (gateway-*, p50-ratio, p99-ratio)
		// and in its own (proc-*), as users run it.
		procURL, procCPU := startGatewayProc(b, stdioTarget(true))
		procCS := connectHTTP(b, procURL)
		relayURL, relayCPU := startRelayProc(b)
		relayCS := connectHTTP(b, relayURL)
		cpu0, relayCPU0 := procCPU(), relayCPU()
		// Every leg takes turns with the others in blocks of calls, the
		// direct baseline included, so that all see the same load on a
		// shared machine: a ratio of legs timed minutes apart measures
		// the machine's load as much as the gateway.
		legs := timedInTurns(b, n, direct, connectHTTP(b, srv.URL), connectHTTP(b, startGateway(b, true)), procCS, relayCS, connectStdio(b, stdioRelayCmd()))
		srv.Close()
		// The gateway process is idle but for the calls it serves (and
		// their warm-up): its CPU time per call, GC and access log
		// included, to set its p50 beside.
		b.ReportMetric(float64(procCPU()-cpu0)/1e3/(n+200), "proc-gateway-cpu-µs/call")
		b.ReportMetric(float64(relayCPU()-relayCPU0)/1e3/(n+200), "relay-cpu-µs/call")

		type pct struct{ p50, p99 float64 }
		at := map[string]pct{}
		for k, name := range []string{"direct", "http", "gateway", "proc-gateway", "relay", "stdio-relay"} {
			p50, p99 := percentiles(legs[k])
			at[name] = pct{float64(p50), float64(p99)}
			b.ReportMetric(float64(p50)/1e3, name+"-p50-µs")
			b.ReportMetric(float64(p99)/1e3, name+"-p99-µs")
		}
		ratios := func(prefix, of, to string) {
			b.ReportMetric(at[of].p50/at[to].p50, prefix+"p50-ratio")
			b.ReportMetric(at[of].p99/at[to].p99, prefix+"p99-ratio")
		}
		ratios("", "gateway", "direct")
		ratios("http-vs-direct-", "http", "direct")
		ratios("gateway-vs-http-", "gateway", "http")
		ratios("proc-", "proc-gateway", "direct")
		ratios("relay-", "relay", "direct")
		ratios("proc-vs-relay-", "proc-gateway", "relay")
		ratios("stdio-relay-", "stdio-relay", "direct")
		ratios("relay-vs-stdio-relay-", "relay", "stdio-relay")
	}
}

// timedInTurns is n calls on each session after a warm-up (200 calls
// each), in blocks that take turns, the leg that goes first rotating
// too; the sessions are closed. The result is each session's, in order.
func timedInTurns(b *testing.B, n int, sessions ...*sdk.ClientSession) [][]time.Duration {
	for _, cs := range sessions {
		defer cs.Close()
		timeCalls(b, cs, 200)
	}
	const block = 200
	out := make([][]time.Duration, len(sessions))
	for i := 0; i < n; i += block {
		k := min(block, n-i)
		for j := range sessions {
			leg := (j + i/block) % len(sessions)
			out[leg] = append(out[leg], timeCalls(b, sessions[leg], k)...)
		}
	}
	return out
}

func BenchmarkSessionStart(b *testing.B) {
	const n = 100
	for _, reuse := range []bool{true, false} {
		b.Run(fmt.Sprintf("reuse=%v", reuse), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				url := startGateway(b, reuse)
				connectHTTP(b, url).Close() // the shared process starts here
				var ds []time.Duration
				for j := 0; j < n; j++ {
					t0 := time.Now()
					cs := connectHTTP(b, url)
					ds = append(ds, time.Since(t0))
					cs.Close()
				}
				p50, p99 := percentiles(ds)
				b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
				b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
			}
		})
	}
}

func rssKiB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return 0
}

func BenchmarkRSSAfter1000Sessions(b *testing.B) {
	for i := 0; i < b.N; i++ {
		url := startGateway(b, true)
		cs := connectHTTP(b, url)
		timeCalls(b, cs, 10)
		cs.Close()
		runtime.GC()
		before := rssKiB()
		for j := 0; j < 1000; j++ {
			cs := connectHTTP(b, url)
			timeCalls(b, cs, 1)
			cs.Close()
		}
		time.Sleep(time.Second)
		runtime.GC()
		after := rssKiB()
		b.ReportMetric(before/1024, "rss-before-MiB")
		b.ReportMetric(after/1024, "rss-after-1000-MiB")
	}
}
