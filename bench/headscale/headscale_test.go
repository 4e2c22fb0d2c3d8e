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
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"tailscale.com/tailcfg"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/hstest"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

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

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// tailgate is a store, vault, connect service and run manager with one
// connected environment "bench".
type tailgate struct {
	m   *run.Manager
	org string
}

func newTailgate(b *testing.B, svc *connect.Service, req connect.Request) *tailgate {
	ctx := context.Background()
	dir := b.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	kr, err := vault.LoadOrCreateKeyFile(filepath.Join(dir, "key"))
	if err != nil {
		b.Fatal(err)
	}
	org, _ := st.CreateOrg(ctx, "bench")
	if _, err := st.CreateEnvironment(ctx, org.ID, "bench"); err != nil {
		b.Fatal(err)
	}
	svc.Store, svc.Vault = st, kr
	req.OrgID, req.Env = org.ID, "bench"
	if _, err := svc.Connect(ctx, req); err != nil {
		b.Fatal(err)
	}
	m := &run.Manager{Connect: svc, Store: st, Logger: slog.New(slog.DiscardHandler), Lease: -1}
	b.Cleanup(m.Close)
	return &tailgate{m: m, org: org.ID}
}

// firstByte sends a proxied GET for target and waits for the first byte.
func firstByte(proxyAddr, target string) error {
	c, err := net.DialTimeout("tcp", proxyAddr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, target)
	_, err = bufio.NewReader(c).ReadByte()
	return err
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
		if err := firstByte(info.ProxyAddr, target); err != nil {
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
	ctx := context.Background()
	hs := hstest.Start(b, hstest.Options{})
	app := netip.MustParseAddrPort("192.0.2.10:80")
	hs.ServeApp(app, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "bench") }))
	id, err := hs.RouterID(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := hs.Admin().ApproveRoutes(ctx, id, []netip.Prefix{hstest.RouterSubnet}); err != nil {
		b.Fatal(err)
	}
	onHS := newTailgate(b, &connect.Service{ControlURL: hs.URL, Outbound: outbound.AllowLoopback()}, connect.Request{
		APIToken: hs.APIKey, Targets: []string{app.String()},
		Control: controlplane.Control{Type: controlplane.Headscale, URL: hs.URL},
	})

	sb, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sb.Close() })
	onSB := newTailgate(b, &connect.Service{APIBaseURL: sb.APIURL(), ControlURL: sb.ControlURL()}, connect.Request{
		APIToken: sb.NewAPIToken(), Targets: []string{sandbox.DemoAppName + ":80"},
	})

	for b.Loop() {
		h := onHS.startToFirstByte(b, app.String())
		s := onSB.startToFirstByte(b, sandbox.DemoAppName)
		b.ReportMetric(ms(percentile(h, .5)), "headscale-p50-ms")
		b.ReportMetric(ms(percentile(h, .95)), "headscale-p95-ms")
		b.ReportMetric(float64(over(h, time.Second)), "headscale-runs-over-1s")
		b.ReportMetric(ms(percentile(s, .5)), "sandbox-p50-ms")
		b.ReportMetric(ms(percentile(s, .95)), "sandbox-p95-ms")
	}
}

// BenchmarkWarmOnHeadscale compares two ways to warm a fresh node's path
// before its first connection, 30 joins each, join → first byte of the
// app through the subnet router: one disco ping with a 5 s timeout (what
// run.Manager does today), and disco pings of 200 ms repeated until one
// answers. A router that has not yet learnt the newcomer drops its first
// ping and handshake; one long ping then waits out WireGuard's 5 s retry.
func BenchmarkWarmOnHeadscale(b *testing.B) {
	ctx := context.Background()
	hs := hstest.Start(b, hstest.Options{})
	app := netip.MustParseAddrPort("192.0.2.10:80")
	hs.ServeApp(app, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "bench") }))
	id, err := hs.RouterID(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := hs.Admin().ApproveRoutes(ctx, id, []netip.Prefix{hstest.RouterSubnet}); err != nil {
		b.Fatal(err)
	}
	tg := newTailgate(b, &connect.Service{ControlURL: hs.URL, Outbound: outbound.AllowLoopback()}, connect.Request{
		APIToken: hs.APIKey, Targets: []string{app.String()},
		Control: controlplane.Control{Type: controlplane.Headscale, URL: hs.URL},
	})
	svc := tg.m.Connect
	cred, err := svc.OpenCredential(ctx, tg.org, "bench")
	if err != nil {
		b.Fatal(err)
	}
	measure := func(retry bool) []time.Duration {
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
				for i := 0; i < 50; i++ {
					pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
					_, err := n.LocalClient().Ping(pctx, hstest.RouterIP, tailcfg.PingDisco)
					cancel()
					if err == nil {
						break
					}
				}
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
		one := measure(false)
		rep := measure(true)
		b.ReportMetric(ms(percentile(one, .5)), "one-ping-p50-ms")
		b.ReportMetric(ms(percentile(one, .95)), "one-ping-p95-ms")
		b.ReportMetric(float64(over(one, time.Second)), "one-ping-over-1s")
		b.ReportMetric(ms(percentile(rep, .5)), "repeated-ping-p50-ms")
		b.ReportMetric(ms(percentile(rep, .95)), "repeated-ping-p95-ms")
		b.ReportMetric(float64(over(rep, time.Second)), "repeated-ping-over-1s")
	}
}
