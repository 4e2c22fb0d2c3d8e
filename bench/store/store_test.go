// Package store_test benchmarks the store operations behind the API on
// SQLite and on PostgreSQL, in the same run, interleaved so both see the
// same machine. Run with
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/store/
//
// It prints p50 and p95 per operation and engine, in microseconds, and
// reports PostgreSQL's p50 as a ratio to SQLite's. BENCH_OPS sets how many
// times each operation runs per engine (default 300).
//
// The engines: sqlite is the embedded default (one file, WAL,
// synchronous=NORMAL: a commit is not flushed to disk on its own);
// postgres is a throwaway cluster on loopback TCP with fsync and full page
// writes on and synchronous_commit off, the same promise as SQLite's
// NORMAL (a crash may lose the last commits, never consistency);
// postgres-sync is the same cluster with PostgreSQL's default
// synchronous_commit=on (every commit waits for its WAL flush).
package store_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/bench/measure"

	"github.com/tailgate-dev/tailgate/internal/pgtest"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/target"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// engine is one store under test and what was measured on it.
type engine struct {
	name  string
	st    *store.Store
	org   string
	token string
	lat   map[string][]time.Duration
}

// The operations, in the order one API flow makes them.
var ops = []string{"authenticate", "create-env", "get-env", "put-connection", "get-connection",
	"add-verification", "create-run", "get-run", "update-run", "end-run", "list-runs", "create+end-run-8way"}

func BenchmarkStoreOps(b *testing.B) {
	n := measure.Count("BENCH_OPS", 300)
	ctx := context.Background()
	cluster, err := pgtest.Start(ctx, "fsync=on", "full_page_writes=on", "synchronous_commit=on")
	if err != nil {
		b.Skip(err)
	}
	b.Cleanup(func() { cluster.Stop() })
	pgURL, err := cluster.CreateDatabase(ctx)
	if err != nil {
		b.Fatal(err)
	}
	pgSyncURL, err := cluster.CreateDatabase(ctx)
	if err != nil {
		b.Fatal(err)
	}
	dsns := []struct{ name, dsn string }{
		{"sqlite", filepath.Join(b.TempDir(), "tailgate.db")},
		{"postgres", pgURL + "&synchronous_commit=off"},
		{"postgres-sync", pgSyncURL},
	}
	var engines []*engine
	for _, d := range dsns {
		st, err := store.Open(ctx, d.dsn)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		org, _ := st.CreateOrg(ctx, "bench")
		token, _, err := st.CreateAPIToken(ctx, org.ID, "bench", store.RoleAdmin)
		if err != nil {
			b.Fatal(err)
		}
		engines = append(engines, &engine{name: d.name, st: st, org: org.ID, token: token, lat: map[string][]time.Duration{}})
	}
	targets, _ := target.ParseList([]string{"app.internal.example:443", "10.1.2.3:8443"})

	for b.Loop() {
		for i := range n {
			// Rotate which engine goes first, so none is always the one
			// that meets a cold cache or a busy neighbour.
			for k := range engines {
				e := engines[(i+k)%len(engines)]
				if err := e.flow(ctx, i, targets); err != nil {
					b.Fatalf("%s: %v", e.name, err)
				}
			}
		}
	}

	fmt.Printf("\n%-20s", "µs (p50 / p95)")
	for _, e := range engines {
		fmt.Printf(" %22s", e.name)
	}
	fmt.Println()
	for _, op := range ops {
		fmt.Printf("%-20s", op)
		for _, e := range engines {
			fmt.Printf(" %10.0f / %9.0f", us(measure.Percentile(e.lat[op], .5)), us(measure.Percentile(e.lat[op], .95)))
		}
		fmt.Println()
	}
	lite, pg := engines[0], engines[1]
	for _, op := range []string{"authenticate", "get-connection", "create-run", "end-run"} {
		b.ReportMetric(float64(measure.Percentile(pg.lat[op], .5))/float64(measure.Percentile(lite.lat[op], .5)), op+"-pg/sqlite-p50")
	}
}

// flow makes one API flow's store calls on e, timing each.
func (e *engine) flow(ctx context.Context, i int, targets []target.Target) error {
	timed := func(op string, f func() error) error {
		start := time.Now()
		err := f()
		e.lat[op] = append(e.lat[op], time.Since(start))
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		return nil
	}
	var env store.Environment
	var run store.Run
	name := fmt.Sprintf("env-%d", i)
	steps := []struct {
		op string
		f  func() error
	}{
		{"authenticate", func() error { _, err := e.st.Authenticate(ctx, e.token); return err }},
		{"create-env", func() (err error) { env, err = e.st.CreateEnvironment(ctx, e.org, name); return err }},
		{"get-env", func() error { _, err := e.st.GetEnvironment(ctx, e.org, name); return err }},
		{"put-connection", func() error {
			_, err := e.st.PutConnection(ctx, e.org, store.Connection{EnvID: env.ID, State: store.StateConnected,
				Tag: "tag:tailgate-" + name, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32")}, Targets: targets,
				OAuthClientID: "k123", Secret: vault.Sealed{KeyID: "k", Nonce: bytes.Repeat([]byte{1}, 12), Ciphertext: bytes.Repeat([]byte{2}, 64)}})
			return err
		}},
		{"get-connection", func() error { _, err := e.st.GetConnection(ctx, e.org, env.ID); return err }},
		{"add-verification", func() error {
			_, err := e.st.AddVerification(ctx, e.org, store.Verification{EnvID: env.ID, OK: true, Results: []byte(`[{"target":"app.internal.example:443","ok":true}]`)})
			return err
		}},
		{"create-run", func() (err error) {
			run, err = e.st.CreateRun(ctx, e.org, store.Run{EnvID: env.ID, ExpiresAt: time.Now().Add(time.Hour)})
			return err
		}},
		{"get-run", func() error { _, err := e.st.GetRun(ctx, e.org, run.ID); return err }},
		{"update-run", func() error {
			return e.st.UpdateRun(ctx, e.org, run.ID, "ready", "tailgate-run-1", "node1", "127.0.0.1:40001")
		}},
		{"end-run", func() error { return e.st.EndRun(ctx, e.org, run.ID, "ended") }},
		{"list-runs", func() error { _, err := e.st.ListRuns(ctx, e.org, env.ID, 20); return err }},
	}
	for _, s := range steps {
		if err := timed(s.op, s.f); err != nil {
			return err
		}
	}
	// Eight runs started and ended at once: writers contending.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 8 {
		wg.Go(func() {
			start := time.Now()
			r, err := e.st.CreateRun(ctx, e.org, store.Run{EnvID: env.ID, ExpiresAt: time.Now().Add(time.Hour)})
			if err == nil {
				err = e.st.EndRun(ctx, e.org, r.ID, "ended")
			}
			mu.Lock()
			e.lat["create+end-run-8way"] = append(e.lat["create+end-run-8way"], time.Since(start))
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return firstErr
}
