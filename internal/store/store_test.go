package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/pgtest"
	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailgate-dev/tailgate/internal/vault"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// testEngine is one of the engines the store's suite runs against.
type testEngine struct {
	name string
	// newDSN makes a fresh, empty database.
	newDSN func(t *testing.T) string
}

var testEngines = []testEngine{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "tailgate.db") }},
	{"postgres", func(t *testing.T) string { return pgtest.NewDatabase(t) }},
}

// forEachEngine runs test once per engine, as subtests named after it.
func forEachEngine(t *testing.T, test func(t *testing.T, e testEngine)) {
	for _, e := range testEngines {
		t.Run(e.name, func(t *testing.T) { test(t, e) })
	}
}

// open opens a store on a fresh database and returns it with its DSN.
func (e testEngine) open(t *testing.T) (*Store, string) {
	t.Helper()
	dsn := e.newDSN(t)
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}

func mustOrg(t *testing.T, s *Store, name string) Org {
	t.Helper()
	o, err := s.CreateOrg(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func mustEnv(t *testing.T, s *Store, orgID, name string) Environment {
	t.Helper()
	e, err := s.CreateEnvironment(context.Background(), orgID, name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func testConnection(envID string) Connection {
	return Connection{
		EnvID:         envID,
		State:         StateConnected,
		Tag:           "tag:tailgate-staging",
		CIDRs:         []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("100.64.0.5/32")},
		Warnings:      []string{"staging.internal.example.com:443: broader than this hostname"},
		Targets:       mustTargets("staging.internal.example.com:443", "staging-box:443"),
		Control:       controlplane.Control{Type: controlplane.Headscale, URL: "https://hs.example.com"},
		Detail:        json.RawMessage(`{"plan":1}`),
		OAuthClientID: "kABC123CNTRL",
		Secret:        vault.Sealed{KeyID: "0011223344556677", Nonce: bytes.Repeat([]byte{1}, 12), Ciphertext: []byte("sealed-bytes-not-a-secret")},
	}
}

func mustTargets(raw ...string) []target.Target {
	ts, err := target.ParseList(raw)
	if err != nil {
		panic(err)
	}
	return ts
}

func TestMigrationsApplyOnceAndReopenCleanly(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, path := e.open(t)
		org := mustOrg(t, s, "Acme")
		mustEnv(t, s, org.ID, "staging")
		s.Close()

		for i := 0; i < 3; i++ {
			s2, err := Open(ctx, path)
			if err != nil {
				t.Fatalf("reopen %d: %v", i, err)
			}
			var n, maxV int
			if err := s2.db.QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_version`).Scan(&n, &maxV); err != nil {
				t.Fatal(err)
			}
			if n != SchemaVersion() || maxV != SchemaVersion() {
				t.Errorf("schema_version has %d rows, max %d; want each of %d migrations once", n, maxV, SchemaVersion())
			}
			if _, err := s2.GetEnvironment(ctx, org.ID, "staging"); err != nil {
				t.Errorf("data lost on reopen: %v", err)
			}
			if e.name == "sqlite" {
				var fk int
				s2.db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk)
				var mode string
				s2.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode)
				if fk != 1 || mode != "wal" {
					t.Errorf("foreign_keys=%d journal_mode=%s, want 1 and wal", fk, mode)
				}
			}
			s2.Close()
		}
		if e.name == "sqlite" {
			st, _ := os.Stat(path)
			if st.Mode().Perm() != 0o600 {
				t.Errorf("database file mode %v, want 0600", st.Mode().Perm())
			}
		}
	})
}

// Replicas starting together on a new database: every Open succeeds and
// each migration is applied exactly once (on PostgreSQL, without the
// advisory lock the losers would fail creating tables that exist).
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		dsn := e.newDSN(t)
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				s, err := Open(context.Background(), dsn)
				if err == nil {
					s.Close()
				}
				errs[i] = err
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Errorf("concurrent Open: %v", err)
			}
		}
		s, err := Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var n, distinct int
		s.db.QueryRowContext(context.Background(), `SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_version`).Scan(&n, &distinct)
		if n != SchemaVersion() || distinct != SchemaVersion() {
			t.Errorf("%d schema_version rows (%d versions), want %d", n, distinct, SchemaVersion())
		}
	})
}

// On PostgreSQL, Open migrates under an advisory lock: while another
// session holds it, Open waits (and so applies nothing), then finishes.
func TestPostgresMigrationWaitsForTheAdvisoryLock(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	other, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	holder, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() {
		s, err := Open(ctx, dsn)
		if err == nil {
			s.Close()
		}
		opened <- err
	}()
	// Wait until Open is queued on the lock, as PostgreSQL sees it.
	for waiting := 0; waiting == 0; {
		select {
		case err := <-opened:
			t.Fatalf("Open finished while another session held the migration lock: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if err := other.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	var tables int
	other.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables)
	if tables != 0 {
		t.Errorf("%d tables created before the lock was granted", tables)
	}
	if _, err := holder.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, migrationLock); err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatalf("Open after the lock was released: %v", err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		s, path := e.open(t)
		if _, err := s.db.ExecContext(context.Background(), `INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'future.sql', 0)`, SchemaVersion()+1); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err := Open(context.Background(), path)
		if err == nil || !strings.Contains(err.Error(), "newer than this tailgate") {
			t.Errorf("Open on a newer schema: %v", err)
		}
	})
}

func TestTenancyIsolation(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, _ := e.open(t)
		a, b := mustOrg(t, s, "A"), mustOrg(t, s, "B")
		envA := mustEnv(t, s, a.ID, "staging")
		if _, err := s.PutConnection(ctx, a.ID, testConnection(envA.ID)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddVerification(ctx, a.ID, Verification{EnvID: envA.ID, OK: true}); err != nil {
			t.Fatal(err)
		}
		runA, err := s.CreateRun(ctx, a.ID, Run{EnvID: envA.ID, ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}

		// B may use the same name: names are per org.
		envB := mustEnv(t, s, b.ID, "staging")
		if envB.ID == envA.ID {
			t.Fatal("same id for two orgs' environments")
		}

		notFound := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("org B %s of org A's env: err = %v, want ErrNotFound", what, err)
			}
		}
		if got, err := s.GetEnvironmentByID(ctx, b.ID, envA.ID); err == nil {
			t.Errorf("B got A's env by id: %+v", got)
		} else {
			notFound("get by id", err)
		}
		envs, _ := s.ListEnvironments(ctx, b.ID)
		if len(envs) != 1 || envs[0].ID != envB.ID {
			t.Errorf("B lists %+v", envs)
		}
		_, err = s.GetConnection(ctx, b.ID, envA.ID)
		notFound("get connection", err)
		_, err = s.PutConnection(ctx, b.ID, testConnection(envA.ID))
		notFound("put connection", err)
		notFound("set state", s.SetConnectionState(ctx, b.ID, envA.ID, StateFailing))
		notFound("delete connection", s.DeleteConnection(ctx, b.ID, envA.ID))
		_, err = s.LatestVerification(ctx, b.ID, envA.ID)
		notFound("latest verification", err)
		_, err = s.AddVerification(ctx, b.ID, Verification{EnvID: envA.ID, OK: false})
		notFound("add verification", err)
		_, err = s.CreateRun(ctx, b.ID, Run{EnvID: envA.ID, ExpiresAt: time.Now().Add(time.Hour)})
		notFound("create run", err)
		_, err = s.GetRun(ctx, b.ID, runA.ID)
		notFound("get run", err)
		notFound("end run", s.EndRun(ctx, b.ID, runA.ID, "hijack"))
		notFound("update run", s.UpdateRun(ctx, b.ID, runA.ID, "ready", "h", "d", "127.0.0.1:1"))
		if runs, _ := s.ListRuns(ctx, b.ID, envA.ID, 10); len(runs) != 0 {
			t.Errorf("B lists A's runs: %+v", runs)
		}

		// A disconnects, and B still cannot delete A's env, even by id.
		if err := s.DeleteConnection(ctx, a.ID, envA.ID); err != nil {
			t.Fatal(err)
		}
		notFound("delete env", s.DeleteEnvironment(ctx, b.ID, envA.ID))

		// A's data is all still there, unchanged.
		if got, err := s.GetEnvironment(ctx, a.ID, "staging"); err != nil || got.ID != envA.ID {
			t.Errorf("A's env after B's attempts: %+v, %v", got, err)
		}
		if v, err := s.LatestVerification(ctx, a.ID, envA.ID); err != nil || !v.OK {
			t.Errorf("A's verification: %+v, %v", v, err)
		}
		if r, err := s.GetRun(ctx, a.ID, runA.ID); err != nil || !r.EndedAt.IsZero() {
			t.Errorf("A's run: %+v, %v", r, err)
		}
	})
}

func TestTokenIsStoredOnlyAsHash(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, path := e.open(t)
		org := mustOrg(t, s, "Acme")
		token, tok, err := s.CreateAPIToken(ctx, org.ID, "ci", RoleAdmin)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(token, "tg_") || len(token) < 40 {
			t.Errorf("token %q: want tg_ and at least 256 bits", token)
		}
		p, err := s.Authenticate(ctx, token)
		if err != nil || p != (Principal{OrgID: org.ID, TokenID: tok.ID, Role: RoleAdmin}) {
			t.Fatalf("Authenticate = %+v, %v", p, err)
		}
		// Flush the log into the data files, then scan every byte on disk:
		// the database file and its WAL, or the whole PostgreSQL cluster.
		files := []string{path, path + "-wal", path + "-shm"}
		if e.name == "sqlite" {
			if _, err := s.db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
				t.Fatal(err)
			}
		} else {
			cluster := pgtest.Shared(t)
			if _, err := cluster.Admin().ExecContext(ctx, `CHECKPOINT`); err != nil {
				t.Fatal(err)
			}
			files = nil
			filepath.WalkDir(cluster.DataDir(), func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					files = append(files, p)
				}
				return nil
			})
			if len(files) < 100 {
				t.Fatalf("only %d files in the cluster's data directory", len(files))
			}
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if bytes.Contains(b, []byte(token)) || bytes.Contains(b, []byte(strings.TrimPrefix(token, "tg_"))) {
				t.Errorf("%s contains the API token", f)
			}
		}
		if s2, err := s.ListAPITokens(ctx, org.ID); err != nil || len(s2) != 1 || s2[0].Name != "ci" {
			t.Errorf("ListAPITokens = %+v, %v", s2, err)
		}
	})
}

func TestAuthenticateRefusesBadTokens(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, _ := e.open(t)
		org := mustOrg(t, s, "Acme")
		token, tok, _ := s.CreateAPIToken(ctx, org.ID, "ci", RoleRunner)
		other := mustOrg(t, s, "Other")
		for _, bad := range []string{"", "tg_", token[:len(token)-1], token + "a", strings.ToUpper(token), "Bearer " + token, "tskey-api-abc", "tg_" + strings.Repeat("a", 500)} {
			if _, err := s.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("Authenticate(%.20q…) = %v, want ErrUnauthenticated", bad, err)
			} else if bad != "" && strings.Contains(err.Error(), bad) {
				t.Errorf("error echoes the token")
			}
		}
		if err := s.RevokeAPIToken(ctx, other.ID, tok.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("another org revoked the token: %v", err)
		}
		if err := s.RevokeAPIToken(ctx, org.ID, tok.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, token); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("revoked token still authenticates: %v", err)
		}
		if _, _, err := s.CreateAPIToken(ctx, org.ID, "x", Role("root")); err == nil {
			t.Errorf("unknown role accepted")
		}
		if _, _, err := s.CreateAPIToken(ctx, "org_nosuch", "x", RoleAdmin); !errors.Is(err, ErrNotFound) {
			t.Errorf("token for unknown org: %v", err)
		}
	})
}

func TestEnvironmentLifecycle(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, _ := e.open(t)
		org := mustOrg(t, s, "Acme")
		env := mustEnv(t, s, org.ID, "staging")
		mustEnv(t, s, org.ID, "prod")
		if _, err := s.CreateEnvironment(ctx, org.ID, "staging"); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate name: %v, want ErrConflict", err)
		}
		if _, err := s.CreateEnvironment(ctx, "org_nosuch", "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("env for unknown org: %v", err)
		}
		envs, err := s.ListEnvironments(ctx, org.ID)
		if err != nil || len(envs) != 2 || envs[0].Name != "prod" || envs[1].Name != "staging" {
			t.Errorf("ListEnvironments = %+v, %v", envs, err)
		}

		// Connect, reconnect, verify.
		c := testConnection(env.ID)
		got, err := s.PutConnection(ctx, org.ID, c)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.CIDRs, c.CIDRs) || !reflect.DeepEqual(got.Warnings, c.Warnings) || !reflect.DeepEqual(got.Targets, c.Targets) || got.Control != c.Control ||
			!reflect.DeepEqual(got.Secret, c.Secret) || got.OAuthClientID != c.OAuthClientID || string(got.Detail) != string(c.Detail) || got.State != StateConnected {
			t.Errorf("PutConnection round trip:\n got %+v\nwant %+v", got, c)
		}
		c2 := c
		c2.CIDRs, c2.Warnings, c2.Detail = []netip.Prefix{netip.MustParsePrefix("100.64.0.6/32")}, nil, nil
		got2, err := s.PutConnection(ctx, org.ID, c2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got2.CIDRs) != 1 || len(got2.Warnings) != 0 || got2.Detail != nil || !got2.CreatedAt.Equal(got.CreatedAt) {
			t.Errorf("reconnect: %+v", got2)
		}

		v, err := s.AddVerification(ctx, org.ID, Verification{EnvID: env.ID, OK: false, Results: json.RawMessage(`[{"target":"a","ok":false}]`)})
		if err != nil {
			t.Fatal(err)
		}
		if cc, _ := s.GetConnection(ctx, org.ID, env.ID); cc.State != StateFailing {
			t.Errorf("state after failed verification = %s", cc.State)
		}
		later, _ := s.AddVerification(ctx, org.ID, Verification{EnvID: env.ID, OK: true, At: v.At.Add(time.Second)})
		if cc, _ := s.GetConnection(ctx, org.ID, env.ID); cc.State != StateVerified {
			t.Errorf("state after passing verification = %s", cc.State)
		}
		if lv, err := s.LatestVerification(ctx, org.ID, env.ID); err != nil || lv.ID != later.ID || !lv.OK {
			t.Errorf("LatestVerification = %+v, %v", lv, err)
		}
		if _, err := s.AddVerification(ctx, org.ID, Verification{EnvID: env.ID, Results: json.RawMessage(`{bad`)}); err == nil {
			t.Errorf("invalid results JSON accepted")
		}

		// Deleting a connected env is refused: the tailnet side must be cleaned first.
		if err := s.DeleteEnvironment(ctx, org.ID, env.ID); !errors.Is(err, ErrConflict) {
			t.Errorf("delete connected env: %v, want ErrConflict", err)
		}
		if err := s.DeleteConnection(ctx, org.ID, env.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetConnection(ctx, org.ID, env.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("connection after delete: %v", err)
		}
		if err := s.DeleteEnvironment(ctx, org.ID, env.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetEnvironment(ctx, org.ID, "staging"); !errors.Is(err, ErrNotFound) {
			t.Errorf("env after delete: %v", err)
		}
		if _, err := s.LatestVerification(ctx, org.ID, env.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("verifications outlived their env: %v", err)
		}
		// The name is free again.
		mustEnv(t, s, org.ID, "staging")
	})
}

func TestPutConnectionRefusesIncompleteRecords(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, _ := e.open(t)
		org := mustOrg(t, s, "Acme")
		env := mustEnv(t, s, org.ID, "staging")
		for name, mutate := range map[string]func(*Connection){
			"no secret":    func(c *Connection) { c.Secret = vault.Sealed{} },
			"no client id": func(c *Connection) { c.OAuthClientID = "" },
			"bad state":    func(c *Connection) { c.State = "maybe" },
			"bad detail":   func(c *Connection) { c.Detail = json.RawMessage("{") },
		} {
			c := testConnection(env.ID)
			mutate(&c)
			if _, err := s.PutConnection(ctx, org.ID, c); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		if _, err := s.GetConnection(ctx, org.ID, env.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("a refused connection was stored")
		}
	})
}

func TestRunLifecycle(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, _ := e.open(t)
		org := mustOrg(t, s, "Acme")
		env := mustEnv(t, s, org.ID, "staging")
		exp := time.Now().Add(30 * time.Minute)
		r, err := s.CreateRun(ctx, org.ID, Run{EnvID: env.ID, ExpiresAt: exp})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r.ID, "run_") || r.State != "starting" {
			t.Errorf("run = %+v", r)
		}
		if err := s.UpdateRun(ctx, org.ID, r.ID, "ready", "tailgate-run-1", "nodeid1", "127.0.0.1:40001"); err != nil {
			t.Fatal(err)
		}
		open, _ := s.OpenRuns(ctx)
		if len(open) != 1 || open[0].ProxyAddr != "127.0.0.1:40001" || open[0].State != "ready" {
			t.Errorf("OpenRuns = %+v", open)
		}
		if err := s.EndRun(ctx, org.ID, r.ID, "timeout"); err != nil {
			t.Fatal(err)
		}
		if err := s.EndRun(ctx, org.ID, r.ID, "again"); !errors.Is(err, ErrNotFound) {
			t.Errorf("ending an ended run: %v", err)
		}
		got, _ := s.GetRun(ctx, org.ID, r.ID)
		if got.EndedAt.IsZero() || got.EndReason != "timeout" || got.State != "ended" {
			t.Errorf("ended run = %+v", got)
		}
		if open, _ := s.OpenRuns(ctx); len(open) != 0 {
			t.Errorf("ended run still open: %+v", open)
		}
		if runs, _ := s.ListRuns(ctx, org.ID, env.ID, 0); len(runs) != 1 {
			t.Errorf("ListRuns = %+v", runs)
		}
	})
}

// TestRunLeasesAndHoldersAreShared: what several replicas need of a run
// is in the store: its lease deadline (renewed by whichever replica a
// heartbeat reaches, lapsed ones listed for the sweeper), its placement,
// and the replica holding its node (orphaned once that replica is unseen).
func TestRunLeasesAndHoldersAreShared(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, _ := e.open(t)
		org := mustOrg(t, s, "Acme")
		other := mustOrg(t, s, "Other")
		env := mustEnv(t, s, org.ID, "staging")
		now := time.Now()
		leased, err := s.CreateRun(ctx, org.ID, Run{EnvID: env.ID, ExpiresAt: now.Add(time.Hour), Placement: "runner", LeaseUntil: now.Add(-time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		held, err := s.CreateRun(ctx, org.ID, Run{EnvID: env.ID, ExpiresAt: now.Add(time.Hour), Holder: "replica_a"})
		if err != nil {
			t.Fatal(err)
		}
		unleased, err := s.CreateRun(ctx, org.ID, Run{EnvID: env.ID, ExpiresAt: now.Add(time.Hour), Holder: "replica_b"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.GetRun(ctx, org.ID, leased.ID)
		if err != nil || got.Placement != "runner" || got.Holder != "" || got.EnvName != "staging" || !got.LeaseUntil.Equal(leased.LeaseUntil) {
			t.Errorf("leased run = %+v, %v", got, err)
		}
		if due, _ := s.DueRuns(ctx, now); len(due) != 1 || due[0].ID != leased.ID {
			t.Errorf("DueRuns = %+v, want the lapsed lease only", due)
		}
		if err := s.RenewRunLease(ctx, other.ID, leased.ID, now.Add(time.Minute)); !errors.Is(err, ErrNotFound) {
			t.Errorf("another org renewed the lease: %v", err)
		}
		if err := s.RenewRunLease(ctx, org.ID, leased.ID, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.RenewRunLease(ctx, org.ID, unleased.ID, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.GetRun(ctx, org.ID, unleased.ID); !got.LeaseUntil.IsZero() || got.Placement != "server" {
			t.Errorf("a run without a lease got one: %+v", got)
		}
		if due, _ := s.DueRuns(ctx, now); len(due) != 0 {
			t.Errorf("DueRuns after renewal = %+v", due)
		}
		if due, _ := s.DueRuns(ctx, now.Add(2*time.Hour)); len(due) != 3 {
			t.Errorf("DueRuns past the lifetime = %d runs, want 3", len(due))
		}

		// replica_a is alive, replica_b never was: b's run is an orphan,
		// and the runner run (held by no process) never is.
		if err := s.TouchReplica(ctx, "replica_a"); err != nil {
			t.Fatal(err)
		}
		if err := s.TouchReplica(ctx, "replica_a"); err != nil {
			t.Fatal(err)
		}
		orphans, err := s.OrphanedRuns(ctx, now.Add(-time.Minute))
		if err != nil || len(orphans) != 1 || orphans[0].ID != unleased.ID {
			t.Errorf("OrphanedRuns = %+v, %v; want %s only", orphans, err, unleased.ID)
		}
		if orphans, _ := s.OrphanedRuns(ctx, now.Add(time.Minute)); len(orphans) != 2 {
			t.Errorf("with replica_a unseen too: %d orphans, want 2", len(orphans))
		}
		if mine, _ := s.RunsHeldBy(ctx, "replica_a"); len(mine) != 1 || mine[0].ID != held.ID {
			t.Errorf("RunsHeldBy = %+v", mine)
		}
		if n, err := s.ForgetReplicas(ctx, now.Add(time.Minute)); err != nil || n != 0 {
			t.Errorf("forgot %d replicas holding open runs (%v)", n, err)
		}
		if err := s.EndRun(ctx, org.ID, held.ID, "done"); err != nil {
			t.Fatal(err)
		}
		if mine, _ := s.RunsHeldBy(ctx, "replica_a"); len(mine) != 0 {
			t.Errorf("RunsHeldBy lists an ended run: %+v", mine)
		}
		if err := s.RenewRunLease(ctx, org.ID, held.ID, now.Add(time.Minute)); !errors.Is(err, ErrNotFound) {
			t.Errorf("renewed an ended run: %v", err)
		}
		if n, err := s.ForgetReplicas(ctx, now.Add(time.Minute)); err != nil || n != 1 {
			t.Errorf("ForgetReplicas = %d, %v; want 1", n, err)
		}
	})
}

// TestFirstOrgIsCreatedOnceByProcessesStartingTogether: eight stores on
// one new database (replicas starting together) ask for the first org;
// one creates it.
func TestFirstOrgIsCreatedOnceByProcessesStartingTogether(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, dsn := e.open(t)
		var wg sync.WaitGroup
		var created atomic.Int32
		for range 8 {
			wg.Go(func() {
				st, err := Open(ctx, dsn)
				if err != nil {
					t.Error(err)
					return
				}
				defer st.Close()
				if _, ok, err := st.CreateFirstOrg(ctx, "default"); err != nil {
					t.Error(err)
				} else if ok {
					created.Add(1)
				}
			})
		}
		wg.Wait()
		orgs, err := s.ListOrgs(ctx)
		if err != nil || len(orgs) != 1 || created.Load() != 1 {
			t.Errorf("%d orgs, %d reported created, %v; want one", len(orgs), created.Load(), err)
		}
	})
}

func TestConcurrentWritesAllLand(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, _ := e.open(t)
		org := mustOrg(t, s, "Acme")
		const writers, each = 10, 20
		var wg sync.WaitGroup
		errs := make(chan error, writers*each*3)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					env, err := s.CreateEnvironment(ctx, org.ID, fmt.Sprintf("env-%d-%d", w, i))
					if err != nil {
						errs <- err
						continue
					}
					if _, err := s.PutConnection(ctx, org.ID, testConnection(env.ID)); err != nil {
						errs <- err
					}
					if _, err := s.AddVerification(ctx, org.ID, Verification{EnvID: env.ID, OK: i%2 == 0}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent write: %v", err)
		}
		envs, err := s.ListEnvironments(ctx, org.ID)
		if err != nil || len(envs) != writers*each {
			t.Fatalf("%d environments, want %d (%v)", len(envs), writers*each, err)
		}
		var conns, vers int
		s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM connections`).Scan(&conns)
		s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM verifications`).Scan(&vers)
		if conns != writers*each || vers != writers*each {
			t.Errorf("connections %d, verifications %d, want %d each", conns, vers, writers*each)
		}
	})
}

func TestConnectedEnvironmentsSpansOrgsForTheScheduler(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, _ := e.open(t)
		a, b := mustOrg(t, s, "A"), mustOrg(t, s, "B")
		ea, eb := mustEnv(t, s, a.ID, "staging"), mustEnv(t, s, b.ID, "prod")
		mustEnv(t, s, b.ID, "not-connected")
		s.PutConnection(ctx, a.ID, testConnection(ea.ID))
		s.PutConnection(ctx, b.ID, testConnection(eb.ID))
		got, err := s.ConnectedEnvironments(ctx)
		if err != nil || len(got) != 2 {
			t.Fatalf("ConnectedEnvironments = %+v, %v", got, err)
		}
		seen := map[string]string{}
		for _, c := range got {
			seen[c.EnvID] = c.OrgID + "/" + c.EnvName
		}
		if seen[ea.ID] != a.ID+"/staging" || seen[eb.ID] != b.ID+"/prod" {
			t.Errorf("ConnectedEnvironments = %+v", got)
		}
	})
}

func TestConnectionJSONLeavesOutTheSealedSecret(t *testing.T) {
	c := testConnection("env_x")
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("Secret")) || bytes.Contains(b, []byte("sealed-bytes")) {
		t.Errorf("JSON of a Connection carries the sealed secret: %s", b)
	}
}

func TestListOrgsOldestFirst(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		s, _ := e.open(t)
		ctx := context.Background()
		if orgs, err := s.ListOrgs(ctx); err != nil || len(orgs) != 0 {
			t.Fatalf("new database: %v, %v", orgs, err)
		}
		a, _ := s.CreateOrg(ctx, "first")
		b, _ := s.CreateOrg(ctx, "second")
		orgs, err := s.ListOrgs(ctx)
		if err != nil || len(orgs) != 2 || orgs[0].ID != a.ID || orgs[1].ID != b.ID || orgs[1].Name != "second" {
			t.Fatalf("ListOrgs = %+v, %v", orgs, err)
		}
	})
}
