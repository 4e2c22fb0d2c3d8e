package main

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

// TestServeWarmPoolServesEachRunANewNodeAndLeavesNothingBehind runs
// tailgate serve with a warm pool of 2 against a sandbox tailnet in this
// process, and watches the tailnet's device list (the Tailscale API's)
// as runs take pool nodes, the environment is disconnected and connected
// again, and the server is stopped with SIGTERM and, restarted, killed
// with SIGKILL.
func TestServeWarmPoolServesEachRunANewNodeAndLeavesNothingBehind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sb := sandboxtest.Start(t)
	dir := t.TempDir()
	db, key := filepath.Join(dir, "t.db"), filepath.Join(dir, "t.key")
	serve := func(env []string, args ...string) (*subprocess, *runServer, string) {
		p := startTailgate(t, env, append([]string{"serve", "--db", db, "--key-file", key, "--listen", "127.0.0.1:0",
			"--metrics-listen", "127.0.0.1:0", "--tailscale-api", sb.APIURL(), "--control-url", sb.ControlURL(), "--log-format", "json"}, args...)...)
		line := p.waitLine(t, ctx, "listening on http://")
		rs := &runServer{sb: sb, url: line[strings.Index(line, "http://"):]}
		m := p.waitLine(t, ctx, "Prometheus metrics on http://")
		return p, rs, strings.TrimSpace(m[strings.Index(m, "http://"):])
	}
	// Pool nodes and runs' nodes of environment web, in the tailnet.
	webNodes := func() []tsapi.Device {
		devs, err := tsapi.NewWithAPIToken(sb.APIURL(), sb.NewAPIToken()).Devices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return slices.DeleteFunc(devs, func(d tsapi.Device) bool { return !strings.HasPrefix(d.Hostname, "tailgate-run-web-") })
	}
	waitNodes := func(what string, n int) []tsapi.Device {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			devs := webNodes()
			if len(devs) == n {
				return devs
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d nodes of web in the tailnet, want %d: %+v", what, len(devs), n, devs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// waitReady waits until a server's pool has n nodes ready (joined and
	// warmed), as its metrics say.
	waitReady := func(what, metrics string, n float64) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for metricValue(scrape(t, metrics), "tailgate_warm_pool_nodes") != n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the pool never had %v nodes ready", what, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	p1, a, metrics := serve([]string{"TAILGATE_WARM_POOL=2"})
	admin := tokenLine.FindString(p1.output())
	var tok api.CreatedToken
	a.call(t, "POST", "/v1/tokens", admin, api.CreateTokenRequest{Name: "ci", Role: "runner"}, 201, &tok)
	a.call(t, "POST", "/v1/environments", admin, map[string]string{"name": "web"}, 201, nil)
	connectWeb := func() string {
		apiToken := sb.NewAPIToken()
		a.call(t, "PUT", "/v1/environments/web/private-network", admin,
			api.ConnectRequest{APIToken: apiToken, Targets: []string{sandbox.DemoAppName + ":80"}}, 200, nil)
		return apiToken
	}
	apiToken := connectWeb()
	waitReady("the pool filled", metrics, 2)
	pool := waitNodes("the pool filled", 2)

	var first, second api.Run
	a.call(t, "POST", "/v1/environments/web/runs", tok.Token, api.StartRunRequest{}, 201, &first)
	a.call(t, "POST", "/v1/environments/web/runs", tok.Token, api.StartRunRequest{}, 201, &second)
	for _, r := range []api.Run{first, second} {
		if !r.Pooled || r.JoinMS != 0 || !slices.ContainsFunc(pool, func(d tsapi.Device) bool { return d.Hostname == r.Node }) {
			t.Errorf("run %s did not come from the pool %+v: %+v", r.ID, pool, r.Info)
		}
		u, _ := url.Parse(r.ProxyURL)
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
		resp, err := c.Get("http://" + sandbox.DemoAppName + "/")
		if err != nil {
			t.Fatalf("run %s: %v", r.ID, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("run %s: the private app answered %s", r.ID, resp.Status)
		}
	}
	if first.Node == second.Node || first.NodeIP == second.NodeIP {
		t.Errorf("two runs got the same node: %s %s", first.Node, first.NodeIP)
	}
	// Two runs' nodes and two new pool nodes.
	waitReady("the pool refilled", metrics, 2)
	waitNodes("the pool refilled", 4)
	page := scrape(t, metrics)
	if h, m, n := metricValue(page, "tailgate_warm_pool_hits_total"), metricValue(page, "tailgate_warm_pool_misses_total"),
		metricValue(page, "tailgate_warm_pool_nodes"); h != 2 || m != 0 || n != 2 {
		t.Errorf("metrics: hits %v misses %v nodes %v, want 2 0 2", h, m, n)
	}
	for _, r := range []api.Run{first, second} {
		a.call(t, "DELETE", "/v1/runs/"+r.ID, tok.Token, nil, 200, nil)
	}
	waitNodes("the runs ended", 2)

	// tailgate run says where its node came from.
	waitReady("the pool refilled", metrics, 2)
	cli := startTailgate(t, []string{"TAILGATE_TOKEN=" + tok.Token, "TAILGATE_SERVER=" + a.url},
		"run", "--env", "web", "--on-server", "--jail", "off", "--", "true")
	if code, out := finishRun(t, cli); code != 0 || !strings.Contains(out, "node from the server's warm pool") {
		t.Errorf("tailgate run --on-server with a warm pool: exit %d:\n%s", code, out)
	}

	// Disconnecting takes the pool's nodes off the tailnet.
	a.call(t, "DELETE", "/v1/environments/web/private-network", admin, api.DisconnectRequest{APIToken: apiToken}, 200, nil)
	waitNodes("disconnected", 0)

	// Stopping the server (SIGTERM) logs every pool node out.
	connectWeb()
	waitReady("the pool filled again", metrics, 2)
	waitNodes("the pool filled again", 2)
	p1.cmd.Process.Signal(syscall.SIGTERM)
	if code := p1.wait(t, time.Minute); code != 0 {
		t.Errorf("serve exit %d", code)
	}
	waitNodes("the server stopped", 0)

	// A server killed with SIGKILL leaves its pool nodes to the control's
	// ephemeral-node cleanup, which removes them.
	p2, _, metrics2 := serve(nil, "--warm-pool", "2")
	waitReady("the restarted server's pool filled", metrics2, 2)
	waitNodes("the restarted server's pool filled", 2)
	p2.cmd.Process.Kill()
	p2.wait(t, time.Minute)
	waitNodes("the server was killed", 0)
}
