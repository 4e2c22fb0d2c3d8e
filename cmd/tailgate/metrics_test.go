package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

// scrape GETs a /metrics page.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, b := testhttp.Get(t, nil, url)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// metricValue is the value of one series ("name" or `name{label="v"}`)
// in a Prometheus text page; -1 when absent.
func metricValue(page, series string) float64 {
	for _, l := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// TestServeMetricsFollowRunsAndLatencies runs serve --sandbox with
// --metrics-listen and watches the metrics as an environment is
// connected and verified and runs start and end: by the client, and by
// the sweeper when a run's lease lapses.
func TestServeMetricsFollowRunsAndLatencies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p := startTailgate(t, nil, "serve", "--sandbox", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--run-lease", "2s", "--log-format", "json")
	line := p.waitLine(t, ctx, "Prometheus metrics on http://")
	metrics := line[strings.Index(line, "http://"):]
	out := p.output()
	server, admin, apiToken := assignment(t, out, "TAILGATE_SERVER"), assignment(t, out, "TAILGATE_TOKEN"), assignment(t, out, "TAILSCALE_API_TOKEN")
	want := func(page, series string, v float64) {
		t.Helper()
		if got := metricValue(page, series); got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}

	page := scrape(t, metrics)
	want(page, "tailgate_runs_started_total", 0)
	want(page, "tailgate_runs_active", 0)
	want(page, `tailgate_runs_ended_total{reason="client"}`, 0)
	// Not on the API's address: there every path but /healthz, /readyz
	// and the OpenAPI document needs a token.
	if a := runAPICall(t, server, "GET", "/metrics", "", nil); a.status != 401 {
		t.Errorf("/metrics on the API's address: %d, want 401", a.status)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if a := runAPICall(t, server, "GET", path, "", nil); a.status != 200 {
			t.Errorf("%s: %d %s", path, a.status, a.body)
		}
	}

	c := &cliServer{url: server, dir: t.TempDir()}
	t.Setenv("TAILGATE_TOKEN", admin)
	c.mustEnv(t, "", "create", "staging")
	c.mustEnv(t, apiToken+"\n", "connect", "staging", "--target", sandbox.DemoAppName+":80")
	c.mustEnv(t, "", "verify", "staging")
	page = scrape(t, metrics)
	want(page, `tailgate_connect_seconds_count{result="ok"}`, 1)
	want(page, `tailgate_verify_seconds_count{result="ok"}`, 1)

	// A run held open, then ended by its client.
	var r struct{ ID string }
	a := runAPICall(t, server, "POST", "/v1/environments/staging/runs", admin, nil)
	if a.status != 201 {
		t.Fatalf("start run: %d %s", a.status, a.body)
	}
	if err := json.Unmarshal(a.body, &r); err != nil || r.ID == "" {
		t.Fatalf("start run: %v %s", err, a.body)
	}
	page = scrape(t, metrics)
	want(page, "tailgate_runs_started_total", 1)
	want(page, "tailgate_runs_active", 1)
	want(page, `tailgate_run_start_seconds_count{result="ok"}`, 1)
	if a := runAPICall(t, server, "DELETE", "/v1/runs/"+r.ID, admin, nil); a.status != 200 {
		t.Fatalf("end run: %d %s", a.status, a.body)
	}
	page = scrape(t, metrics)
	want(page, "tailgate_runs_active", 0)
	want(page, `tailgate_runs_ended_total{reason="client"}`, 1)

	// A run nobody heartbeats is ended by the sweeper.
	if a := runAPICall(t, server, "POST", "/v1/environments/staging/runs", admin, nil); a.status != 201 {
		t.Fatalf("start run: %d %s", a.status, a.body)
	}
	want(scrape(t, metrics), "tailgate_runs_active", 1)
	deadline := time.Now().Add(30 * time.Second)
	for metricValue(scrape(t, metrics), `tailgate_runs_ended_total{reason="lease_expired"}`) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the unheartbeaten run was not counted as lease_expired:\n%s", scrape(t, metrics))
		}
		time.Sleep(200 * time.Millisecond)
	}
	page = scrape(t, metrics)
	want(page, "tailgate_runs_active", 0)
	want(page, "tailgate_runs_started_total", 2)
	want(page, `tailgate_run_start_seconds_count{result="ok"}`, 2)

	// A run of an environment that is not connected fails to start: a
	// latency observation with its code, not a run started or ended.
	c.mustEnv(t, "", "create", "never-connected")
	if a := runAPICall(t, server, "POST", "/v1/environments/never-connected/runs", admin, nil); a.status != 409 {
		t.Fatalf("start run of a disconnected environment: %d %s", a.status, a.body)
	}
	page = scrape(t, metrics)
	want(page, `tailgate_run_start_seconds_count{result="not_connected"}`, 1)
	want(page, "tailgate_runs_started_total", 2)

	// Tenant data never becomes a label.
	for _, secret := range []string{"staging", "never-connected", admin, apiToken, "org_"} {
		if strings.Contains(page, secret) {
			t.Errorf("the metrics page contains %q", secret)
		}
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, p.output())
	}
}
