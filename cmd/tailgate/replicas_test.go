package main

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/pgtest"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
)

// TestReplicaSIGKILLedLeavesItsRunnerRunToTheOther: two tailgate serve
// processes on one PostgreSQL database; a run on the runner's host
// started through the first is heartbeat, read and ended through the
// second after the first is killed with SIGKILL.
func TestReplicaSIGKILLedLeavesItsRunnerRunToTheOther(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := pgtest.NewDatabase(t)
	sb := sandboxtest.Start(t)
	key := filepath.Join(t.TempDir(), "tailgate.key")
	serve := func() (*subprocess, string) {
		p := startTailgate(t, nil, "serve", "--db", db, "--key-file", key, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
			"--tailscale-api", sb.APIURL(), "--control-url", sb.ControlURL(), "--run-lease", "3s", "--log-format", "json")
		line := p.waitLine(t, ctx, "listening on http://")
		return p, line[strings.Index(line, "http://"):]
	}
	// The first replica creates the database's first admin; the second
	// finds it there.
	pa, urlA := serve()
	admin := tokenLine.FindString(pa.output())
	pb, urlB := serve()
	if tokenLine.MatchString(pb.output()) {
		t.Errorf("the second replica printed a token of its own:\n%s", pb.output())
	}
	t.Cleanup(func() {
		pb.cmd.Process.Signal(syscall.SIGTERM)
		pb.wait(t, time.Minute)
	})
	a := &runServer{url: urlA}
	b := &runServer{url: urlB}
	var tok api.CreatedToken
	a.call(t, "POST", "/v1/tokens", admin, api.CreateTokenRequest{Name: "ci", Role: "runner"}, 201, &tok)
	b.call(t, "POST", "/v1/environments", admin, map[string]string{"name": "web"}, 201, nil)
	a.call(t, "PUT", "/v1/environments/web/private-network", admin,
		api.ConnectRequest{APIToken: sb.NewAPIToken(), Targets: []string{sandbox.DemoAppName + ":80"}}, 200, nil)

	var started, got api.Run
	a.call(t, "POST", "/v1/environments/web/runs", tok.Token, api.StartRunRequest{Placement: run.PlacementRunner}, 201, &started)
	if started.Join == nil {
		t.Fatalf("no join ticket: %+v", started)
	}
	pa.cmd.Process.Kill()
	pa.wait(t, 30*time.Second)

	// Longer than the lease: heartbeats through B keep the run.
	for range 4 {
		b.call(t, "POST", "/v1/runs/"+started.ID+"/heartbeat", tok.Token, nil, 200, &got)
		time.Sleep(time.Second)
	}
	b.call(t, "GET", "/v1/runs/"+started.ID, tok.Token, nil, 200, &got)
	if got.State != run.StateReady || got.Placement != run.PlacementRunner {
		t.Fatalf("B's view after A was killed: %+v", got)
	}
	b.call(t, "DELETE", "/v1/runs/"+started.ID, tok.Token, nil, 200, &got)
	if got.State != run.StateEnded || got.EndReason != api.EndReasonClient {
		t.Errorf("B ended the run as %+v", got)
	}

	// On PostgreSQL the job queue's backlog is a gauge.
	out := pb.output()
	i := strings.Index(out, "Prometheus metrics on http://")
	if i < 0 {
		t.Fatalf("no metrics address:\n%s", out)
	}
	addr, _, _ := strings.Cut(out[i+len("Prometheus metrics on "):], "\n")
	page := scrape(t, strings.TrimSpace(addr))
	if d := metricValue(page, "tailgate_jobs_queue_depth"); d < 0 || d != d {
		t.Errorf("tailgate_jobs_queue_depth = %v:\n%s", d, page)
	}
}
