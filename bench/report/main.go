// Command report runs every benchmark under bench/ once (the Go benchmarks
// and the wrk script of bench/gateway) and prints one table: each figure
// beside the baseline it was measured against in the same run, with the
// ratio. It is the one command behind README's
// benchmark table:
//
//	go run ./bench/report            # everything (about ten minutes)
//	go run ./bench/report -only jail,runner
//
// Each benchmark reports its own figures with b.ReportMetric; this command
// only runs them and pairs the figures up. A benchmark that skips (a
// missing tool, no headscale build) is listed as skipped, with why.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// suite is one benchmark run and how to read its figures.
type suite struct {
	name  string // for -only
	pkg   string
	bench string
	// script, when set, is run instead of go test; it prints its figures
	// as Go benchmark lines (or "skipping: why").
	script []string
	env    []string
	// benchtime is go test's -benchtime ("1x" when empty).
	benchtime string
	// rows pair a figure with its baseline (both metric units as the
	// benchmark reports them); an empty baseline prints the figure alone.
	rows []row
	// rest, with rows, also prints the suite's other figures as reported,
	// after its rows.
	rest bool
}

type row struct {
	what, figure, baseline string
	// lowerIsBetter says how to read the ratio.
	lowerIsBetter bool
}

var suites = []suite{
	{name: "egress", pkg: "./bench/egress/", bench: "ProxyThroughput/connect$", rows: []row{
		{"run proxy throughput (MiB/s) vs direct", "proxy-MiB/s", "direct-MiB/s", false},
	}},
	{name: "jail", pkg: "./bench/egress/", bench: "Jail", rows: []row{
		{"proxy throughput in the jail (MiB/s) vs outside", "jail-MiB/s", "outside-MiB/s", false},
		{"command start → first byte p50 (ms), jail vs none", "jail-p50-ms", "outside-p50-ms", true},
		{"command start → first byte p95 (ms), jail vs none", "jail-p95-ms", "outside-p95-ms", true},
	}},
	{name: "flow", pkg: "./bench/flow/", bench: ".", rows: []row{
		{"Chromium flow (ms), jail vs none", "jail-ms", "off-ms", true},
	}},
	{name: "runner", pkg: "./bench/runner/", bench: ".", env: []string{"BENCH_STARTS=10"}, rows: []row{
		{"run start → first byte p50 (ms), runner host vs server", "runner-p50-ms", "server-p50-ms", true},
		{"run start → first byte p95 (ms), runner host vs server", "runner-p95-ms", "server-p95-ms", true},
	}},
	// The headline is the gateway in its own process, as users run it;
	// in the benchmark's process it shares the SDK client's heap and GC.
	{name: "mcp", pkg: "./bench/mcp/", bench: ".", rest: true, rows: []row{
		{"tools/call p50 (µs), gateway in its own process vs direct stdio", "proc-gateway-p50-µs", "direct-p50-µs", true},
		{"tools/call p99 (µs), gateway in its own process vs direct stdio", "proc-gateway-p99-µs", "direct-p99-µs", true},
		{"tools/call p50 (µs), a do-nothing HTTP→stdio relay process vs direct stdio (the floor)", "relay-p50-µs", "direct-p50-µs", true},
		{"tools/call p50 (µs), a stdio→stdio relay process (no HTTP) vs direct stdio", "stdio-relay-p50-µs", "direct-p50-µs", true},
		{"tools/call p50 (µs), the HTTP relay vs the stdio relay (the HTTP hop)", "relay-p50-µs", "stdio-relay-p50-µs", true},
		{"tools/call p50 (µs), gateway in its own process vs that relay", "proc-gateway-p50-µs", "relay-p50-µs", true},
		{"tools/call p99 (µs), gateway in its own process vs that relay", "proc-gateway-p99-µs", "relay-p99-µs", true},
		{"gateway process CPU µs/call vs the relay's", "proc-gateway-cpu-µs/call", "relay-cpu-µs/call", true},
		{"tools/call p50 (µs), gateway in the bench's process vs direct", "gateway-p50-µs", "direct-p50-µs", true},
		{"tools/call p99 (µs), gateway in the bench's process vs direct", "gateway-p99-µs", "direct-p99-µs", true},
	}},
	{name: "store", pkg: "./bench/store/", bench: ".", env: []string{"BENCH_OPS=200"}, rows: nil},
	{name: "run", pkg: "./bench/run/", bench: ".", env: []string{"BENCH_RUNS=10"}, rows: nil},
	{name: "sandbox", pkg: "./bench/sandbox/", bench: ".", env: []string{"BENCH_NODES=10"}, rows: nil},
	{name: "replicas", pkg: "./bench/replicas/", bench: ".", env: []string{"BENCH_RUNS=20"}, rows: nil},
	{name: "headscale", pkg: "./bench/headscale/", bench: ".", rows: []row{
		{"run start → first byte p50 (ms), headscale vs sandbox", "headscale-p50-ms", "sandbox-p50-ms", true},
		{"run start → first byte p95 (ms), headscale vs sandbox", "headscale-p95-ms", "sandbox-p95-ms", true},
		{"first request to a target p50 (ms), one ping vs WarmPath", "one-ping-p50-ms", "warmpath-p50-ms", true},
	}},
	// The gateway's own cost beside its floor, in one process: the same
	// requests through a bare fasthttp reverse proxy (steadier than wrk
	// on a shared VM: legs take turns in blocks, medians of the blocks).
	{name: "fastfront", pkg: "./internal/gateway/", bench: "FastFront/paired", benchtime: "30000x", rows: []row{
		{"gateway CPU ns/request in-process, no policy, vs fasthttp proxy", "bare-cpu-ns/req", "raw-cpu-ns/req", true},
		{"gateway CPU ns/request in-process, policies, vs fasthttp proxy", "policies-cpu-ns/req", "raw-cpu-ns/req", true},
	}},
	// run.sh's targets take turns in rounds; its *-ratio figures are the
	// medians of each round's ratio, the steadier reading on a VM whose
	// speed drifts (the other rows pair the medians of the figures).
	{name: "gateway", script: []string{"bash", "bench/gateway/run.sh"}, rows: []row{
		{"gateway ÷ nginx req/s, policies, median of rounds", "tailgate-vs-nginx-req/s-ratio", "", false},
		{"gateway ÷ nginx p99, policies, median of rounds", "tailgate-vs-nginx-p99-ratio", "", true},
		{"gateway ÷ nginx p99 ÷ mean latency (the tail's shape), policies, median of rounds", "tailgate-vs-nginx-tail-ratio", "", true},
		{"gateway ÷ nginx CPU µs/request, policies, median of rounds", "tailgate-vs-nginx-cpu-ratio", "", true},
		{"the floor (bare fasthttp proxy) ÷ nginx req/s, median of rounds", "floor-vs-nginx-req/s-ratio", "", false},
		{"the floor ÷ nginx CPU µs/request, median of rounds", "floor-vs-nginx-cpu-ratio", "", true},
		{"gateway ÷ the floor req/s, policies, median of rounds", "tailgate-vs-floor-req/s-ratio", "", false},
		{"gateway ÷ the floor p99, policies, median of rounds", "tailgate-vs-floor-p99-ratio", "", true},
		{"gateway ÷ the floor CPU µs/request, policies, median of rounds", "tailgate-vs-floor-cpu-ratio", "", true},
		{"gateway ÷ nginx req/s over TLS, policies, median of rounds", "tailgate-tls-vs-nginx-tls-req/s-ratio", "", false},
		{"gateway ÷ nginx p99 over TLS, policies, median of rounds", "tailgate-tls-vs-nginx-tls-p99-ratio", "", true},
		{"gateway req/s, policies, vs nginx", "tailgate-req/s", "nginx-req/s", false},
		{"gateway req/s, no policy, vs nginx", "tg-bare-req/s", "nginx-req/s", false},
		{"gateway req/s, policies vs no policy", "tailgate-req/s", "tg-bare-req/s", false},
		{"gateway p99 (ms), policies, vs nginx", "tailgate-p99-ms", "nginx-p99-ms", true},
		{"gateway CPU µs/request, policies, vs nginx", "tailgate-cpu-us/req", "nginx-cpu-us/req", true},
		{"gateway CPU µs/request, policies vs no policy", "tailgate-cpu-us/req", "tg-bare-cpu-us/req", true},
		{"gateway req/s, no policy, fast front vs net/http alone", "tg-bare-req/s", "tg-nethttp-req/s", false},
		{"gateway req/s, policies, vs Caddy", "tailgate-req/s", "caddy-req/s", false},
	}},
}

func main() {
	only := flag.String("only", "", "comma-separated suites to run (default all): "+names())
	flag.Parse()
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	host, _ := os.Hostname()
	fmt.Printf("tailgate benchmarks, %s, %s/%s, %d CPUs, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), host)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SUITE\tFIGURE\tVALUE\tBASELINE\tRATIO")
	for _, s := range suites {
		if len(want) > 0 && !want[s.name] {
			continue
		}
		metrics, skipped, err := runSuite(s)
		switch {
		case err != nil:
			fmt.Fprintf(tw, "%s\tfailed: %v\t\t\t\n", s.name, err)
			continue
		case skipped != "":
			fmt.Fprintf(tw, "%s\tskipped: %s\t\t\t\n", s.name, skipped)
			continue
		}
		inRows := map[string]bool{}
		for _, r := range s.rows {
			v, okV := find(metrics, r.figure)
			b, okB := find(metrics, r.baseline)
			if !okV {
				fmt.Fprintf(tw, "%s\t%s\tmissing\t\t\n", s.name, r.what)
				continue
			}
			base, ratio := "", ""
			if okB {
				base = trim(b)
			}
			if okB && b != 0 {
				ratio = fmt.Sprintf("%.2f×", v/b)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.name, r.what, trim(v), base, ratio)
			inRows[r.figure], inRows[r.baseline] = true, true
		}
		if s.rows != nil && !s.rest {
			continue
		}
		for _, m := range metrics {
			if inRows[m.unit] {
				continue // printed beside its baseline above
			}
			if m.unit == "ns/op" || m.unit == "B/op" || m.unit == "allocs/op" || m.unit == "MB/s" {
				continue // the harness's own, not the benchmark's figures
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\n", s.name, m.label(), trim(m.value))
		}
	}
	tw.Flush()
}

func names() string {
	var out []string
	for _, s := range suites {
		out = append(out, s.name)
	}
	return strings.Join(out, ",")
}

type metric struct {
	bench, unit string
	value       float64
}

// label names the figure: its unit, after the sub-benchmark's name when
// there is one ("grants MB-RSS-per-idle-node"), so cases stay apart.
func (m metric) label() string {
	_, sub, ok := strings.Cut(m.bench, "/")
	if !ok {
		return m.unit
	}
	if i := strings.LastIndex(sub, "-"); i > 0 {
		if _, err := strconv.Atoi(sub[i+1:]); err == nil {
			sub = sub[:i] // the GOMAXPROCS suffix
		}
	}
	return sub + " " + m.unit
}

// runSuite runs one go test -bench and reads every "value unit" pair of
// its Benchmark lines.
func runSuite(s suite) ([]metric, string, error) {
	benchtime := s.benchtime
	if benchtime == "" {
		benchtime = "1x"
	}
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", s.bench, "-benchtime", benchtime, "-count", "1", s.pkg)
	if s.script != nil {
		cmd = exec.Command(s.script[0], s.script[1:]...)
	}
	cmd.Env = append(os.Environ(), s.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ms []metric
	var skipped string
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "skipping: "); i >= 0 && skipped == "" {
			skipped = strings.TrimSpace(line[i+len("skipping: "):])
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		name := f[0]
		for i := 2; i+1 < len(f); i += 2 {
			v, perr := strconv.ParseFloat(f[i], 64)
			if perr != nil {
				continue
			}
			ms = append(ms, metric{bench: name, unit: f[i+1], value: v})
		}
	}
	if err != nil && len(ms) == 0 {
		tail := out.String()
		if len(tail) > 300 {
			tail = tail[len(tail)-300:]
		}
		return nil, "", fmt.Errorf("%v: %s", err, strings.ReplaceAll(strings.TrimSpace(tail), "\n", " | "))
	}
	if len(ms) > 0 {
		skipped = ""
	}
	return ms, skipped, nil
}

func find(ms []metric, unit string) (float64, bool) {
	for _, m := range ms {
		if m.unit == unit {
			return m.value, true
		}
	}
	return 0, false
}

func trim(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
