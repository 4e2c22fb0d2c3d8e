package jobs

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/pgtest"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/tailgatetest"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	sandboxtest.Close()
	os.Exit(code)
}

// replica is one tailgate serve process's worth of the server side, as
// stack.go builds it on PostgreSQL: its own store connection, connect
// service, run manager, River client and API, on the shared database.
type replica struct {
	name  string
	ts    *tailgatetest.Stack
	m     *run.Manager
	q     *Queue
	api   *httptest.Server
	watch context.CancelFunc
}

const testLease = 2 * time.Second

// newReplica starts a replica of ts's tailgate. verify, when set, is its
// scheduled verification (every verifyEvery).
func newReplica(t *testing.T, name string, ts *tailgatetest.Stack, verify Verifier, verifyEvery time.Duration) *replica {
	t.Helper()
	r := &replica{name: name, ts: ts}
	r.m = &run.Manager{Connect: ts.Connect, Store: ts.Store, Logger: ts.Logger().With("replica", name), Lease: testLease,
		ReplicaTimeout: 3 * time.Second}
	q, err := Start(context.Background(), Options{DSN: ts.DBPath, Replica: r.m.ReplicaID(), Runs: r.m,
		Verify: verify, VerifyEvery: verifyEvery, SweepEvery: time.Second, OrphansEvery: time.Second,
		Logger: ts.Logger().With("replica", name)})
	if err != nil {
		t.Fatal(err)
	}
	r.q = q
	ctx, cancel := context.WithCancel(context.Background())
	r.watch = cancel
	go r.m.Watch(ctx, 200*time.Millisecond)
	r.api = httptest.NewServer(api.New(api.Options{Store: ts.Store, PrivateNetwork: ts.Connect, Runs: r.m, RunLease: testLease, Logger: ts.Logger()}))
	t.Cleanup(func() {
		r.api.Close()
		r.watch()
		if r.q != nil {
			r.q.Stop(context.Background())
		}
		r.m.Close()
	})
	return r
}

// kill stops the replica abruptly: its jobs are cancelled, its pool and
// its watch stop, and it ends nothing (a SIGKILLed process cannot).
func (r *replica) kill() {
	r.api.Close()
	r.watch()
	r.q.cancel()
	r.q.pool.Close()
	r.q = nil
}

// call makes one API request to r and decodes the answer into out.
func (r *replica) call(t *testing.T, method, path, token string, body any, want int, out any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, r.api.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, r.name, err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	json.NewDecoder(resp.Body).Decode(&raw)
	if resp.StatusCode != want {
		t.Fatalf("%s %s on %s: %d %s, want %d", method, path, r.name, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
	}
}

// twoReplicas is a tailgate on a fresh PostgreSQL database with an
// environment "web" connected to the sandbox's demo app, and two replicas.
func twoReplicas(t *testing.T) (a, b *replica) {
	t.Helper()
	ts := tailgatetest.NewOn(t, sandboxtest.Shared(t), pgtest.NewDatabase(t))
	ts.ConnectEnv(t, "web", sandbox.DemoAppName+":80")
	return newReplica(t, "A", ts, nil, 0), newReplica(t, "B", ts.Replica(t), nil, 0)
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRunStartedOnOneReplicaIsKeptAndEndedOnAnother: a run on the
// runner's host started through replica A is read, heartbeat and ended
// through B; a run whose node A holds, ended through B, leaves the
// tailnet from A, which notices at its next reconcile.
func TestRunStartedOnOneReplicaIsKeptAndEndedOnAnother(t *testing.T) {
	a, b := twoReplicas(t)
	tok := a.ts.Runner
	var started api.Run
	a.call(t, "POST", "/v1/environments/web/runs", tok, api.StartRunRequest{Placement: run.PlacementRunner}, 201, &started)
	if started.Placement != run.PlacementRunner || started.Join == nil {
		t.Fatalf("start answer %+v; want a runner run with a join ticket", started)
	}
	var got api.Run
	b.call(t, "GET", "/v1/runs/"+started.ID, tok, nil, 200, &got)
	if got.State != run.StateReady || got.Placement != run.PlacementRunner || got.Env != "web" || got.Node != started.Node || got.Join != nil {
		t.Errorf("B's view %+v", got)
	}
	// Heartbeats through B keep it past several leases.
	for range 4 {
		time.Sleep(testLease / 2)
		b.call(t, "POST", "/v1/runs/"+started.ID+"/heartbeat", tok, nil, 200, &got)
	}
	a.call(t, "GET", "/v1/runs/"+started.ID, tok, nil, 200, &got)
	if got.State != run.StateReady {
		t.Fatalf("run with heartbeats through B was ended: %+v", got)
	}
	b.call(t, "DELETE", "/v1/runs/"+started.ID, tok, nil, 200, &got)
	if got.State != run.StateEnded || got.EndReason != api.EndReasonClient {
		t.Errorf("B's end answer %+v", got)
	}
	a.call(t, "GET", "/v1/runs/"+started.ID, tok, nil, 200, &got)
	if got.State != run.StateEnded || got.EndReason != api.EndReasonClient {
		t.Errorf("A's view after B ended it: %+v", got)
	}
	a.call(t, "POST", "/v1/runs/"+started.ID+"/heartbeat", tok, nil, 409, nil)

	// A run whose node A holds: B ends the record, A stops the node.
	ctx := tailgatetest.Ctx(t, 2*time.Minute)
	held, err := a.m.Start(ctx, a.ts.Org, "web", run.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.call(t, "GET", "/v1/runs/"+held.ID, tok, nil, 200, &got)
	if got.State != run.StateReady || got.Placement != run.PlacementServer {
		t.Errorf("B's view of A's server run: %+v", got)
	}
	b.call(t, "DELETE", "/v1/runs/"+held.ID, tok, nil, 200, &got)
	waitFor(t, 5*time.Second, "A still holds the run B ended", func() bool { return a.m.Open() == 0 })
	sandboxtest.WaitDeviceGone(t, a.ts.Sandbox, held.Node)
}

// TestConcurrentStartsAcrossReplicasAllLand: ten runs started at once,
// alternately through A and B, are ten records, none lost.
func TestConcurrentStartsAcrossReplicasAllLand(t *testing.T) {
	a, b := twoReplicas(t)
	const n = 10
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		r := []*replica{a, b}[i%2]
		wg.Go(func() {
			var got api.Run
			r.call(t, "POST", "/v1/environments/web/runs", r.ts.Runner, api.StartRunRequest{Placement: run.PlacementRunner}, 201, &got)
			ids[i] = got.ID
		})
	}
	wg.Wait()
	env, err := a.ts.Store.GetEnvironment(context.Background(), a.ts.Org, "web")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := a.ts.Store.ListRuns(context.Background(), a.ts.Org, env.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if r.State != run.StateReady || r.Placement != run.PlacementRunner {
			t.Errorf("run %s: %s %s", r.ID, r.State, r.Placement)
		}
		seen[r.ID] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("run %q started but not recorded", id)
		}
	}
	if len(recs) != n || len(seen) != n {
		t.Errorf("%d records (%d distinct), want %d", len(recs), len(seen), n)
	}
}

// countingVerifier is scheduled verification whose verifying is a record
// in the store (no node joins), shared by both replicas so it can tell
// whether two verifications ever overlapped.
type countingVerifier struct {
	sched    *connect.Scheduler
	st       *store.Store
	inFlight *atomic.Int32
	overlap  *atomic.Bool
}

func (v countingVerifier) Due(ctx context.Context) ([]store.ConnectedEnvironment, error) {
	return v.sched.Due(ctx)
}

func (v countingVerifier) VerifyOne(ctx context.Context, orgID, envName string) error {
	if v.inFlight.Add(1) > 1 {
		v.overlap.Store(true)
	}
	defer v.inFlight.Add(-1)
	time.Sleep(300 * time.Millisecond) // joining and probing take a while
	env, err := v.st.GetEnvironment(ctx, orgID, envName)
	if err != nil {
		return err
	}
	_, err = v.st.AddVerification(ctx, orgID, store.Verification{EnvID: env.ID, OK: true})
	return err
}

// TestScheduledVerificationRunsOncePerPeriodWithTwoReplicas: both
// replicas schedule verification every 2 s; the environment is verified
// once per period, never twice in one and never two at once.
func TestScheduledVerificationRunsOncePerPeriodWithTwoReplicas(t *testing.T) {
	const every = 2 * time.Second
	ts := tailgatetest.NewOn(t, sandboxtest.Shared(t), pgtest.NewDatabase(t))
	ts.ConnectEnv(t, "web", sandbox.DemoAppName+":80")
	tsB := ts.Replica(t)
	var inFlight atomic.Int32
	var overlap atomic.Bool
	verifier := func(s *tailgatetest.Stack) Verifier {
		return countingVerifier{sched: &connect.Scheduler{Service: s.Connect, List: s.Store.ConnectedEnvironments, Every: every},
			st: s.Store, inFlight: &inFlight, overlap: &overlap}
	}
	newReplica(t, "A", ts, verifier(ts), every)
	newReplica(t, "B", tsB, verifier(tsB), every)
	env, _ := ts.Store.GetEnvironment(context.Background(), ts.Org, "web")
	// The connect's own verification, then three scheduled ones (how soon
	// depends on leader election and on the machine's load).
	var ats []time.Time
	waitFor(t, time.Minute, "fewer than 3 scheduled verifications", func() bool {
		ats = verificationTimes(t, ts, env.ID)
		return len(ats) >= 4
	})
	time.Sleep(every)
	ats = verificationTimes(t, ts, env.ID)
	for i := 1; i < len(ats); i++ {
		if gap := ats[i].Sub(ats[i-1]); gap < every-100*time.Millisecond {
			t.Errorf("verifications %d and %d are %s apart, within one period of %s: %v", i-1, i, gap, every, ats)
		}
	}
	// Each scheduled verification is a job, unique per environment and
	// period; a job that finds the previous period's still verifying skips
	// (it would verify twice in a row).
	var jobs int
	db, _ := sql.Open("pgx", ts.DBPath)
	defer db.Close()
	if err := db.QueryRow(`SELECT count(*) FROM river_job WHERE kind = $1 AND state = 'completed'`, VerifyEnvironmentArgs{}.Kind()).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if scheduled := len(verificationTimes(t, ts, env.ID)) - 1; jobs < scheduled-1 {
		t.Errorf("%d verification jobs completed, %d scheduled verifications recorded", jobs, scheduled)
	}
	if overlap.Load() {
		t.Error("two verifications ran at once")
	}
}

// verificationTimes lists when envID was verified, oldest first.
func verificationTimes(t *testing.T, ts *tailgatetest.Stack, envID string) []time.Time {
	t.Helper()
	db, err := sql.Open("pgx", ts.DBPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT at FROM verifications WHERE env_id = $1 ORDER BY at`, envID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var ms int64
		if err := rows.Scan(&ms); err != nil {
			t.Fatal(err)
		}
		out = append(out, time.UnixMilli(ms))
	}
	return out
}

// TestKillingAReplicaKeepsItsRunnersRuns: replica A dies abruptly
// (its River client and pool stop, it ends nothing); the runner run
// started through it stays open in B's view while heartbeats reach B,
// and B's sweep ends it once they stop. A run whose node A held is an
// orphan, ended by B's orphan sweep.
func TestKillingAReplicaKeepsItsRunnersRuns(t *testing.T) {
	a, b := twoReplicas(t)
	tok := a.ts.Runner
	var started, got api.Run
	a.call(t, "POST", "/v1/environments/web/runs", tok, api.StartRunRequest{Placement: run.PlacementRunner}, 201, &started)
	// A run whose node A holds dies with A: an orphan, which B ends.
	held, err := a.m.Start(tailgatetest.Ctx(t, 2*time.Minute), a.ts.Org, "web", run.Options{NoLease: true})
	if err != nil {
		t.Fatal(err)
	}
	a.kill()
	for range 5 {
		b.call(t, "POST", "/v1/runs/"+started.ID+"/heartbeat", tok, nil, 200, &got)
		time.Sleep(testLease / 2)
	}
	b.call(t, "GET", "/v1/runs/"+started.ID, tok, nil, 200, &got)
	if got.State != run.StateReady {
		t.Fatalf("B's view of the runner run after A died: %+v", got)
	}
	// Heartbeats stop: B's sweep (leader once A's leadership lapses) ends it.
	waitFor(t, 45*time.Second, "the run outlived its lease", func() bool {
		b.call(t, "GET", "/v1/runs/"+started.ID, tok, nil, 200, &got)
		return got.State == run.StateEnded
	})
	if !strings.Contains(got.EndReason, "lease expired") {
		t.Errorf("end reason %q, want lease expired", got.EndReason)
	}
	// B's orphan sweep runs on its own period: wait for it, and decode into
	// a fresh value each time (an omitted end reason must not read as the
	// previous run's).
	var orphan api.Run
	waitFor(t, 45*time.Second, "the run whose node died with A never ended", func() bool {
		orphan = api.Run{}
		b.call(t, "GET", "/v1/runs/"+held.ID, tok, nil, 200, &orphan)
		return orphan.State == run.StateEnded
	})
	if orphan.EndReason != run.ReasonOrphaned {
		t.Errorf("the run whose node died with A ended with %q, want %q", orphan.EndReason, run.ReasonOrphaned)
	}
}
