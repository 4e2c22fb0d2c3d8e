// Package replicas_test benchmarks runs over two tailgate replicas on one
// PostgreSQL database: BENCH_RUNS (default 100) runs on the runner's host
// started at once, alternately through replica A and B (each its own run
// manager, River client and API, as tailgate serve builds them), each then
// heartbeat and ended through the other replica. Run with
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/replicas/
//
// It prints start p50/p95, heartbeat and end p50/p95 (through the other
// replica), and errors (goal: 0). A runner run's start is the server's
// part: open the credential, mint the single-use key, record the run; the
// runner host's join is bench/runner's.
package replicas_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/bench/measure"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/jobs"
	"github.com/tailgate-dev/tailgate/internal/pgtest"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tailgatetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func replica(b *testing.B, ts *tailgatetest.Stack) string {
	m := &run.Manager{Connect: ts.Connect, Store: ts.Store, Logger: ts.Logger()}
	q, err := jobs.Start(context.Background(), jobs.Options{DSN: ts.DBPath, Replica: m.ReplicaID(), Runs: m})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go m.Watch(ctx, 2*time.Second)
	srv := httptest.NewServer(api.New(api.Options{Store: ts.Store, PrivateNetwork: ts.Connect, Runs: m, RunLease: run.DefaultLease, Logger: ts.Logger()}))
	b.Cleanup(func() {
		srv.Close()
		cancel()
		q.Stop(context.Background())
		m.Close()
	})
	return srv.URL
}

func call(base, method, path, token string, body any, want int, out any) error {
	var rd bytes.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd.Reset(j)
	}
	req, _ := http.NewRequest(method, base+path, &rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d", method, path, resp.StatusCode)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func BenchmarkRunsOverTwoReplicas(b *testing.B) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("BENCH_RUNS")); err == nil && v > 0 {
		n = v
	}
	sb := sandboxtest.Start(b)
	ts := tailgatetest.NewOn(b, sb, pgtest.NewDatabase(b))
	ts.ConnectEnv(b, "web", sandbox.DemoAppName+":80")
	urls := []string{replica(b, ts), replica(b, ts.Replica(b))}
	for range b.N {
		var mu sync.Mutex
		var start, beat, end []time.Duration
		var errs atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			here, there := urls[i%2], urls[(i+1)%2]
			wg.Go(func() {
				t0 := time.Now()
				var r api.Run
				if err := call(here, "POST", "/v1/environments/web/runs", ts.Runner, api.StartRunRequest{Placement: run.PlacementRunner}, 201, &r); err != nil {
					errs.Add(1)
					b.Log(err)
					return
				}
				if r.Placement != run.PlacementRunner {
					errs.Add(1)
					b.Logf("run %s placed on %q", r.ID, r.Placement)
				}
				t1 := time.Now()
				if err := call(there, "POST", "/v1/runs/"+r.ID+"/heartbeat", ts.Runner, nil, 200, nil); err != nil {
					errs.Add(1)
					b.Log(err)
				}
				t2 := time.Now()
				if err := call(there, "DELETE", "/v1/runs/"+r.ID, ts.Runner, nil, 200, nil); err != nil {
					errs.Add(1)
					b.Log(err)
				}
				t3 := time.Now()
				mu.Lock()
				start, beat, end = append(start, t1.Sub(t0)), append(beat, t2.Sub(t1)), append(end, t3.Sub(t2))
				mu.Unlock()
			})
		}
		wg.Wait()
		fmt.Printf("%d runner runs over 2 replicas: start p50 %.1f ms p95 %.1f ms; heartbeat (other replica) p50 %.1f p95 %.1f ms; end (other replica) p50 %.1f p95 %.1f ms; errors %d\n",
			n, measure.PercentileMS(start, .5), measure.PercentileMS(start, .95), measure.PercentileMS(beat, .5), measure.PercentileMS(beat, .95),
			measure.PercentileMS(end, .5), measure.PercentileMS(end, .95), errs.Load())
		b.ReportMetric(measure.PercentileMS(start, .95), "start-p95-ms")
		b.ReportMetric(float64(errs.Load()), "errors")
	}
}
