// Package flow_bench measures a browser flow with Chromium in the network
// jail and outside it, in the same run:
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/flow/
//
// Each iteration runs the same flow (load the private app, check its text,
// screenshot) BENCH_FLOWS times (default 5) with --jail=off and
// --jail=required, alternating, and reports the median durations and
// their ratio (jail/off; 1.0 means the jail costs nothing).
package flow_bench

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/bench/measure"

	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailgate-dev/tailgate/internal/browser"
	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/egress/egresstest"
	"github.com/tailgate-dev/tailgate/internal/jail"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

func BenchmarkFlowJail(b *testing.B) {
	if _, err := os.Stat(browser.DefaultChromiumPath); err != nil {
		b.Skipf("skipping: no Chromium at %s", browser.DefaultChromiumPath)
	}
	app := httptest.NewServer(sandbox.DemoApp(sandbox.DemoAppName))
	b.Cleanup(app.Close)
	tn := egresstest.New()
	tn.AddName(sandbox.DemoAppName, sandbox.DemoAppIP)
	tn.Route(netip.AddrPortFrom(sandbox.DemoAppIP, 80), app.Listener.Addr().String())
	_, addr := egresstest.StartProxy(b, egress.Options{Targets: []target.Target{{Host: sandbox.DemoAppName, Port: 80}}, Resolver: tn, Dialer: tn})
	f, err := browser.Parse([]byte("name: bench\nsteps:\n  - goto: http://" + sandbox.DemoAppName + "/\n  - expect_text: \"" + sandbox.DemoAppText + "\"\n  - screenshot: shot.png\n"))
	if err != nil {
		b.Fatal(err)
	}
	n := measure.Count("BENCH_FLOWS", 5)
	median := func(ds []time.Duration) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[len(s)/2].Microseconds()) / 1000
	}
	for range b.N {
		times := map[jail.Mode][]time.Duration{}
		for range n {
			for _, mode := range []jail.Mode{jail.ModeOff, jail.ModeRequired} {
				rep, err := browser.Run(context.Background(), f, browser.Options{ProxyURL: "http://" + addr.String(), OutDir: b.TempDir(), Jail: mode})
				if err != nil {
					b.Fatalf("flow (jail %s): %v", mode, err)
				}
				times[mode] = append(times[mode], rep.Duration)
			}
		}
		b.ReportMetric(median(times[jail.ModeOff]), "off-ms")
		b.ReportMetric(median(times[jail.ModeRequired]), "jail-ms")
		b.ReportMetric(median(times[jail.ModeRequired])/median(times[jail.ModeOff]), "jail/off")
	}
}
