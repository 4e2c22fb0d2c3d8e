// Package headscale_test measures run start → first byte on a real
// headscale (policy enforced, package hstest) beside the same figure on the
// sandbox (testcontrol, allow-all) in the same process. Run with
//
//	tools/headscale/build.sh && go test -run '^$' -bench . -benchtime 1x ./bench/headscale/
//
// Each figure is 50 runs one after another: run.Manager.Start (mint a key,
// join an ephemeral node, warm the path, start the proxy) until the first
// byte of a private app's answer through the run's proxy, then End.
package headscale_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"tailscale.com/tailcfg"

	"github.com/tailgate-dev/tailgate/bench/measure"
	"github.com/tailgate-dev/tailgate/internal/hstest"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tailgatetest"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// over counts the durations above limit: on headscale, the runs that hit
// the first-connection stall (a WireGuard handshake retried after 5 s).
func over(ds []time.Duration, limit time.Duration) int {
	n := 0
	for _, d := range ds {
		if d > limit {
			n++
		}
	}
	return n
}

// tailgate is a store, vault, connect service and run manager with one
// connected environment "bench".
type tailgate struct {
	m   *run.Manager
	org string
}

func newTailgate(b *testing.B, s *tailgatetest.Stack) *tailgate {
	m := &run.Manager{Connect: s.Connect, Store: s.Store, Logger: slog.New(slog.DiscardHandler), Lease: -1}
	b.Cleanup(m.Close)
	return &tailgate{m: m, org: s.Org}
}

// onHeadscale starts headscale with its subnet router serving a private
// app, and a tailgate whose environment "bench" is connected to the app.
func onHeadscale(b *testing.B) (*tailgate, netip.AddrPort) {
	hs := hstest.Start(b, hstest.Options{})
	app := netip.MustParseAddrPort("192.0.2.10:80")
	hs.ServeApp(app, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "bench") }))
	if err := hs.ApproveRouterSubnet(context.Background()); err != nil {
		b.Fatal(err)
	}
	s := tailgatetest.New(b, nil)
	s.Connect.ControlURL = hs.URL
	s.ConnectHeadscaleEnv(b, hs.URL, hs.APIKey, "bench", app.String())
	return newTailgate(b, s), app
}

// onSandbox is a tailgate whose environment "bench" is connected to the
// demo app on the shared sandbox.
func onSandbox(b *testing.B) *tailgate {
	s := tailgatetest.New(b, sandboxtest.Shared(b))
	s.ConnectEnv(b, "bench", sandbox.DemoAppName+":80")
	return newTailgate(b, s)
}

// startToFirstByte runs 50 runs one after another.
func (tg *tailgate) startToFirstByte(b *testing.B, target string) []time.Duration {
	ctx := context.Background()
	var lat []time.Duration
	for range 50 {
		start := time.Now()
		info, err := tg.m.Start(ctx, tg.org, "bench", run.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := measure.FirstByteVia(info.ProxyAddr, target); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		tg.m.End(ctx, tg.org, info.ID, "bench")
	}
	return lat
}

// BenchmarkRunStartToFirstByte reports p50/p95 on headscale and on the
// sandbox, from the same process.
func BenchmarkRunStartToFirstByte(b *testing.B) {
	onHS, app := onHeadscale(b)
	onSB := onSandbox(b)

	for b.Loop() {
		h := onHS.startToFirstByte(b, app.String())
		s := onSB.startToFirstByte(b, sandbox.DemoAppName)
		measure.ReportP50P95(b, "headscale", h)
		b.ReportMetric(float64(over(h, time.Second)), "headscale-runs-over-1s")
		measure.ReportP50P95(b, "sandbox", s)
	}
}

// BenchmarkWarmOnHeadscale compares two ways to warm a fresh node's path
// before its first connection, 30 joins each, join → first byte of the
// app through the subnet router: one disco ping with a 5 s timeout, and
// tailnet.WarmPath (what runs do: short pings, one after another, growing
// until one answers). A router that has not yet learnt the newcomer drops
// its first ping and handshake; one long ping then waits out WireGuard's
// 5 s retry.
func BenchmarkWarmOnHeadscale(b *testing.B) {
	ctx := context.Background()
	tg, app := onHeadscale(b)
	svc := tg.m.Connect
	cred, err := svc.OpenCredential(ctx, tg.org, "bench")
	if err != nil {
		b.Fatal(err)
	}
	joinToFirstByte := func(retry bool) []time.Duration {
		var lat []time.Duration
		for range 30 {
			key, err := cred.MintKey(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			n, err := tailnet.Join(ctx, cred.JoinOptions(key, "bench"))
			if err != nil {
				b.Fatal(err)
			}
			if retry {
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				n.WarmPath(wctx, app.Addr())
				cancel()
			} else {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				n.LocalClient().Ping(pctx, hstest.RouterIP, tailcfg.PingDisco)
				cancel()
			}
			c, err := n.DialTCP(ctx, app)
			if err != nil {
				b.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", app)
			if _, err := bufio.NewReader(c).ReadByte(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			c.Close()
			n.Close()
		}
		return lat
	}
	for b.Loop() {
		one := joinToFirstByte(false)
		rep := joinToFirstByte(true)
		measure.ReportP50P95(b, "one-ping", one)
		b.ReportMetric(float64(over(one, time.Second)), "one-ping-over-1s")
		measure.ReportP50P95(b, "warmpath", rep)
		b.ReportMetric(float64(over(rep, time.Second)), "warmpath-over-1s")
	}
}
