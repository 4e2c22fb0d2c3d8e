package run

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/tailgatetest"
	"github.com/tailgate-dev/tailgate/internal/testhttp"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/store"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// fixture is a tailgate with one org and connected environments on the
// sandbox tailnet.
type fixture struct {
	sb  *sandbox.Sandbox
	svc *connect.Service
	st  *store.Store
	m   *Manager
	org string
}

func newFixture(t testing.TB, envs map[string][]string) *fixture {
	t.Helper()
	sb := sandboxtest.Shared(t)
	ctx := context.Background()
	ts := tailgatetest.New(t, sb)
	st, svc, org := ts.Store, ts.Connect, ts.Org
	f := &fixture{sb: sb, svc: svc, st: st, org: org, m: &Manager{Connect: svc, Store: st, Logger: slog.New(slog.DiscardHandler)}}
	t.Cleanup(f.m.Close)
	token := sb.NewAPIToken()
	for name, targets := range envs {
		if _, err := st.CreateEnvironment(ctx, org, name); err != nil {
			t.Fatal(err)
		}
		if len(targets) == 0 {
			continue
		}
		if _, err := svc.Connect(ctx, connect.Request{OrgID: org, Env: name, APIToken: token, Targets: targets}); err != nil {
			t.Fatalf("connect %s: %v", name, err)
		}
		t.Cleanup(func() { svc.Disconnect(context.Background(), org, name, token) })
	}
	return f
}

func ctxT(t testing.TB) context.Context { return tailgatetest.Ctx(t, 2*time.Minute) }

func proxyClient(info Info) *http.Client {
	u, _ := url.Parse(info.ProxyURL)
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
}

func fetch(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, b := testhttp.Get(t, c, u)
	return resp, string(b)
}

func TestRunReachesTargetsAndRefusesEverythingElse(t *testing.T) {
	f := newFixture(t, map[string][]string{
		"staging": {sandbox.DemoAppName + ":80", sandbox.DemoAppIP.String() + ":80", sandbox.DeviceName + ":80", "nope." + sandbox.InternalZone + ":80"},
		"prod":    {sandbox.MismatchAppName + ":443"},
	})
	ctx := ctxT(t)

	// Any host DNS lookup made by this process during the run fails and
	// is counted: a leak would show up here.
	var hostDNS atomic.Int32
	oldResolver := net.DefaultResolver
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		hostDNS.Add(1)
		return nil, errors.New("host DNS is off limits")
	}}
	defer func() { net.DefaultResolver = oldResolver }()

	info, err := f.m.Start(ctx, f.org, "staging", Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if info.State != StateReady || !strings.HasPrefix(info.ProxyAddr, "127.0.0.1:") {
		t.Fatalf("run = %+v", info)
	}
	for _, w := range info.Warm {
		if w.Target != "nope."+sandbox.InternalZone+":80" && !w.OK {
			t.Errorf("warming %s failed: %s", w.Target, w.Error)
		}
	}
	// The tsnet node's own dialer must never fall back to the host network.
	var hostDials atomic.Int32
	s := f.m.runs[info.ID]
	s.node.Server().Sys().Dialer.Get().SetSystemDialerForTest(func(ctx context.Context, network, addr string) (net.Conn, error) {
		hostDials.Add(1)
		return nil, errors.New("host network is off limits")
	})

	c := proxyClient(info)
	for _, u := range []string{"http://" + sandbox.DemoAppName + "/", "http://" + sandbox.DemoAppIP.String() + "/", "http://" + sandbox.DeviceName + "/"} {
		resp, body := fetch(t, c, u)
		if resp.StatusCode != 200 || !strings.Contains(body, sandbox.DemoAppText) {
			t.Errorf("GET %s through the run: %s %.80q", u, resp.Status, body)
		}
	}
	for _, tc := range []struct{ url, reason string }{
		{"http://example.com/", string(egress.ReasonNotATarget)},
		{"http://" + sandbox.MismatchAppName + ":443/", string(egress.ReasonNotATarget)}, // another environment's target
		{"http://" + sandbox.DemoAppName + ":81/", string(egress.ReasonPortNotATarget)},
		{"http://nope." + sandbox.InternalZone + "/", string(egress.ReasonNameNotInTailnet)},
	} {
		resp, body := fetch(t, c, tc.url)
		if got := resp.Header.Get("X-Tailgate-Refusal"); got != tc.reason || resp.StatusCode < 400 {
			t.Errorf("GET %s: %s refusal %q (%q), want %q", tc.url, resp.Status, got, body, tc.reason)
		}
	}
	c.CloseIdleConnections()
	if n := hostDNS.Load(); n != 0 {
		t.Errorf("%d DNS queries went to the host resolver", n)
	}
	if n := hostDials.Load(); n != 0 {
		t.Errorf("%d dials went to the host network", n)
	}

	got, err := f.m.Get(ctx, f.org, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(got.Events, func(e egress.Event) bool { return e.Host == "example.com" && e.Refused }) {
		t.Errorf("refusal of example.com not recorded in %+v", got.Events)
	}

	ended, err := f.m.End(ctx, f.org, info.ID, "test done")
	if err != nil || ended.State != StateEnded {
		t.Fatalf("End = %+v, %v", ended, err)
	}
	if _, err := net.DialTimeout("tcp", info.ProxyAddr, time.Second); err == nil {
		t.Error("proxy still listening after the run ended")
	}
	sandboxtest.WaitDeviceGone(t, f.sb, info.Node)
	if got, _ := f.m.Get(ctx, f.org, info.ID); got.State != StateEnded || got.EndReason != "test done" {
		t.Errorf("after End: %+v", got)
	}
}

func TestRunOfDisconnectedOrUnknownEnvironmentFails(t *testing.T) {
	f := newFixture(t, map[string][]string{"idle": nil})
	ctx := ctxT(t)
	_, err := f.m.Start(ctx, f.org, "idle", Options{})
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code != errcode.NotConnected {
		t.Errorf("run of a disconnected environment: %v, want not_connected", err)
	}
	_, err = f.m.Start(ctx, f.org, "nope", Options{})
	if !errors.As(err, &ce) || ce.Code != errcode.NotFound {
		t.Errorf("run of an unknown environment: %v, want not_found", err)
	}
	if _, err := f.m.Get(ctx, "other-org", "run_x"); err == nil {
		t.Error("Get of an unknown run succeeded")
	}
}

func TestSweeperEndsExpiredAndAbandonedRuns(t *testing.T) {
	f := newFixture(t, map[string][]string{"sweep": {sandbox.DemoAppIP.String() + ":80"}})
	f.m.Lease = 300 * time.Millisecond
	ctx := ctxT(t)
	short, err := f.m.Start(ctx, f.org, "sweep", Options{Lifetime: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := f.m.Start(ctx, f.org, "sweep", Options{})
	if err != nil {
		t.Fatal(err)
	}
	abandoned, err := f.m.Start(ctx, f.org, "sweep", Options{})
	if err != nil {
		t.Fatal(err)
	}
	held, err := f.m.Start(ctx, f.org, "sweep", Options{NoLease: true})
	if err != nil {
		t.Fatal(err)
	}
	// kept's client keeps sending heartbeats; abandoned's was killed.
	for range 5 {
		time.Sleep(100 * time.Millisecond)
		if _, err := f.m.Heartbeat(ctx, f.org, kept.ID); err != nil {
			t.Fatal(err)
		}
	}
	f.m.SweepOnce(ctx)
	for _, tc := range []struct {
		info   Info
		reason string
	}{{short, "maximum lifetime"}, {abandoned, "lease expired"}} {
		got, _ := f.m.Get(ctx, f.org, tc.info.ID)
		if got.State != StateEnded || !strings.Contains(got.EndReason, tc.reason) {
			t.Errorf("run %s: %s %q, want ended with %q", tc.info.ID, got.State, got.EndReason, tc.reason)
		}
		sandboxtest.WaitDeviceGone(t, f.sb, tc.info.Node)
	}
	if got, _ := f.m.Get(ctx, f.org, kept.ID); got.State != StateReady {
		t.Errorf("run with heartbeats was ended: %+v", got)
	}
	// A run without a lease needs no heartbeat; it ends when told.
	if got, _ := f.m.Get(ctx, f.org, held.ID); got.State != StateReady {
		t.Errorf("run without a lease was ended: %+v", got)
	}
}

func TestSweeperClosesRunsLeftOpenByACrashedServer(t *testing.T) {
	f := newFixture(t, map[string][]string{"crash": {sandbox.DemoAppIP.String() + ":80"}})
	ctx := ctxT(t)
	env, _ := f.st.GetEnvironment(ctx, f.org, "crash")
	// Held by a replica (a server process) that is not seen any more.
	r, err := f.st.CreateRun(ctx, f.org, store.Run{EnvID: env.ID, ExpiresAt: time.Now().Add(time.Hour), Holder: "replica_crashed"})
	if err != nil {
		t.Fatal(err)
	}
	f.m.SweepOrphans(ctx)
	got, err := f.m.Get(ctx, f.org, r.ID)
	if err != nil || got.State != StateEnded || !strings.Contains(got.EndReason, "orphaned") {
		t.Errorf("orphaned run = %+v, %v", got, err)
	}
}
