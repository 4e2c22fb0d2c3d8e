package run

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/testlog"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

// startPool gives f's manager a warm pool of size, configured further by
// configure, and runs it until the test ends; it checks the store often,
// so tests need not wait long.
func (f *fixture) startPool(t *testing.T, size int, configure ...func(*Pool)) *Pool {
	t.Helper()
	p := &Pool{Size: size, Connect: f.svc, Connections: f.st, Logger: f.m.Logger, Check: 100 * time.Millisecond}
	for _, c := range configure {
		c(p)
	}
	f.m.Pool = p
	t.Cleanup(p.Start(context.Background()))
	return p
}

// waitUntil polls ok until it holds, failing the test after a minute.
func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pooledNodes are the hostnames and tailnet IPs of the nodes waiting in p.
func pooledNodes(p *Pool) (hosts, ips []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.envs {
		for _, n := range e.ready {
			hosts = append(hosts, n.node.Hostname())
			ips = append(ips, n.node.IPv4().String())
		}
	}
	return hosts, ips
}

// tailnetHosts are the hostnames of the sandbox's devices, as the
// Tailscale API lists them.
func tailnetHosts(t *testing.T, sb *sandbox.Sandbox) []string {
	t.Helper()
	devs, err := tsapi.NewWithAPIToken(sb.APIURL(), sb.NewAPIToken()).Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range devs {
		out = append(out, d.Hostname)
	}
	return out
}

func TestRunFromWarmPoolReachesTargetAndNeverSharesANode(t *testing.T) {
	f := newFixture(t, map[string][]string{"pooled": {sandbox.DemoAppName + ":80"}})
	p := f.startPool(t, 2)
	ctx := ctxT(t)
	waitUntil(t, "two pool nodes", func() bool { return p.Ready(f.org, "pooled") == 2 })
	hosts, ips := pooledNodes(p)
	for _, h := range hosts {
		if !slices.Contains(tailnetHosts(t, f.sb), h) {
			t.Errorf("pool node %s is not in the tailnet's device list", h)
		}
	}

	a, err := f.m.Start(ctx, f.org, "pooled", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Pooled || a.JoinMS != 0 || !slices.Contains(ips, a.NodeIP) || !slices.Contains(hosts, a.Node) {
		t.Fatalf("first run did not come from the pool (pool %v %v): %+v", hosts, ips, a)
	}
	if len(a.Warm) != 1 || !a.Warm[0].OK {
		t.Errorf("the pool node's path was not warm: %+v", a.Warm)
	}
	resp, body := fetch(t, proxyClient(a), "http://"+sandbox.DemoAppName+"/")
	if resp.StatusCode != 200 || !strings.Contains(body, sandbox.DemoAppText) {
		t.Errorf("GET the private app through a pooled run: %s %.80q", resp.Status, body)
	}

	b, err := f.m.Start(ctx, f.org, "pooled", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Pooled {
		t.Fatalf("second run did not come from the pool: %+v", b)
	}
	if b.NodeIP == a.NodeIP || b.Node == a.Node {
		t.Fatalf("two runs share a node: %s %s and %s %s", a.Node, a.NodeIP, b.Node, b.NodeIP)
	}
	resp, body = fetch(t, proxyClient(b), "http://"+sandbox.DemoAppName+"/")
	if resp.StatusCode != 200 || !strings.Contains(body, sandbox.DemoAppText) {
		t.Errorf("GET the private app through the second pooled run: %s %.80q", resp.Status, body)
	}

	// Ending a run takes its node off the tailnet; it is not pooled again.
	if _, err := f.m.End(ctx, f.org, a.ID, "done"); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitDeviceGone(t, f.sb, a.Node)
	waitUntil(t, "the pool refilled", func() bool { return p.Ready(f.org, "pooled") == 2 })
	refilled, refilledIPs := pooledNodes(p)
	for _, used := range []Info{a, b} {
		if slices.Contains(refilled, used.Node) || slices.Contains(refilledIPs, used.NodeIP) {
			t.Errorf("run %s's node %s (%s) is back in the pool: %v %v", used.ID, used.Node, used.NodeIP, refilled, refilledIPs)
		}
	}
	if st := p.Stats(); st.Hits != 2 || st.Misses != 0 {
		t.Errorf("stats = %+v, want 2 hits and no miss", st)
	}
}

func TestWarmPoolEmptiesWhenTheEnvironmentIsDisconnectedOrConnectedAgain(t *testing.T) {
	f := newFixture(t, map[string][]string{"gone": {sandbox.DemoAppName + ":80"}})
	p := f.startPool(t, 2)
	ctx := ctxT(t)
	waitUntil(t, "two pool nodes", func() bool { return p.Ready(f.org, "gone") == 2 })
	first, _ := pooledNodes(p)

	// Connected again (a new credential, other targets), through any
	// replica: the old nodes leave and new ones take their place.
	token := f.sb.NewAPIToken()
	if _, err := f.svc.Connect(ctx, connect.Request{OrgID: f.org, Env: "gone", APIToken: token, Targets: []string{sandbox.DemoAppIP.String() + ":80"}}); err != nil {
		t.Fatal(err)
	}
	for _, h := range first {
		sandboxtest.WaitDeviceGone(t, f.sb, h)
	}
	waitUntil(t, "the pool refilled for the new connection", func() bool { return p.Ready(f.org, "gone") == 2 })
	second, _ := pooledNodes(p)
	info, err := f.m.Start(ctx, f.org, "gone", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Pooled || slices.Contains(first, info.Node) || len(info.Warm) != 1 || info.Warm[0].Target != sandbox.DemoAppIP.String()+":80" {
		t.Errorf("run after connecting again: %+v (old pool %v)", info, first)
	}
	f.m.End(ctx, f.org, info.ID, "done")

	// Disconnected (here without telling the pool, as on another
	// replica): the pool notices, its nodes leave the tailnet.
	if err := f.svc.Disconnect(ctx, f.org, "gone", token); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the pool emptied", func() bool { return p.Ready(f.org, "gone") == 0 })
	for _, h := range second {
		sandboxtest.WaitDeviceGone(t, f.sb, h)
	}
}

func TestWarmPoolDrainAndCloseTakeEveryNodeOffTheTailnet(t *testing.T) {
	f := newFixture(t, map[string][]string{"drain": {sandbox.DemoAppName + ":80"}, "close": {sandbox.DemoAppName + ":80"}})
	p := f.startPool(t, 1)
	waitUntil(t, "a pool node each", func() bool { return p.Ready(f.org, "drain") == 1 && p.Ready(f.org, "close") == 1 })
	hosts, _ := pooledNodes(p)

	p.Drain(f.org, "drain")
	if n := p.Ready(f.org, "drain"); n != 0 {
		t.Errorf("%d nodes left after Drain", n)
	}
	// Close waits for joins under way (the drained environment refills).
	p.Close()
	if st := p.Stats(); st.Ready != 0 {
		t.Errorf("%d nodes left after Close", st.Ready)
	}
	for _, h := range hosts {
		sandboxtest.WaitDeviceGone(t, f.sb, h)
	}
	// Nodes that were joining when it closed leave too.
	waitUntil(t, "no pool node in the tailnet", func() bool {
		return !slices.ContainsFunc(tailnetHosts(t, f.sb), func(h string) bool {
			return strings.HasPrefix(h, "tailgate-run-drain-") || strings.HasPrefix(h, "tailgate-run-close-")
		})
	})
	// A closed pool hands out nothing; runs join as without one.
	info, err := f.m.Start(ctxT(t), f.org, "close", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Pooled || info.JoinMS == 0 {
		t.Errorf("run after the pool closed: %+v", info)
	}
}

func TestWarmPoolOfZeroJoinsEachRun(t *testing.T) {
	f := newFixture(t, map[string][]string{"zero": {sandbox.DemoAppName + ":80"}})
	p := f.startPool(t, 0)
	info, err := f.m.Start(ctxT(t), f.org, "zero", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Pooled || info.JoinMS == 0 || info.WarmMS == 0 || len(info.Warm) != 1 || !info.Warm[0].OK {
		t.Errorf("run with a pool of 0: %+v", info)
	}
	resp, body := fetch(t, proxyClient(info), "http://"+sandbox.DemoAppName+"/")
	if resp.StatusCode != 200 || !strings.Contains(body, sandbox.DemoAppText) {
		t.Errorf("GET the private app: %s %.80q", resp.Status, body)
	}
	if st := p.Stats(); st != (PoolStats{}) {
		t.Errorf("a pool of 0 counted %+v", st)
	}
	for _, h := range tailnetHosts(t, f.sb) {
		if strings.HasPrefix(h, "tailgate-run-zero-") && h != info.Node {
			t.Errorf("node %s joined for a pool of 0", h)
		}
	}
}

// flakyOpener refuses to open credentials while failing is set, as a
// revoked credential or an unreachable control would.
type flakyOpener struct {
	CredentialOpener
	failing atomic.Bool
}

func (o *flakyOpener) OpenCredential(ctx context.Context, orgID, env string) (connect.Credential, error) {
	if o.failing.Load() {
		return connect.Credential{}, errors.New("control unreachable (test)")
	}
	return o.CredentialOpener.OpenCredential(ctx, orgID, env)
}

func TestWarmPoolJoinFailureIsLoggedRetriedAndNeverBlocksARun(t *testing.T) {
	f := newFixture(t, map[string][]string{"flaky": {sandbox.DemoAppName + ":80"}})
	logs := &testlog.Buffer{}
	opener := &flakyOpener{CredentialOpener: f.svc}
	opener.failing.Store(true)
	p := f.startPool(t, 1, func(p *Pool) { p.Connect, p.Logger = opener, slog.New(slog.NewJSONHandler(logs, nil)) })
	logs.WaitFor(t, "warm pool: join failed")

	// The pool is empty: the run joins on its own.
	info, err := f.m.Start(ctxT(t), f.org, "flaky", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Pooled || info.JoinMS == 0 {
		t.Errorf("run with an empty pool: %+v", info)
	}
	if st := p.Stats(); st.Misses != 1 || st.JoinFailures < 1 {
		t.Errorf("stats = %+v, want a miss and a join failure", st)
	}
	// Once joins work again, the pool fills after its backoff.
	opener.failing.Store(false)
	waitUntil(t, "the pool filled after the failure", func() bool { return p.Ready(f.org, "flaky") == 1 })
}
