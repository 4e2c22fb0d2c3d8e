// Package store keeps tailgate's state: organisations, their API tokens,
// environments, each environment's connection (with its sealed OAuth
// client secret), verification results and runs.
//
// # Overview
//
// Two engines, one implementation over database/sql. The embedded default
// is one SQLite file (modernc.org/sqlite, pure Go, no cgo) in WAL mode
// with foreign keys on and a busy timeout, so one process can serve many
// concurrent requests. A postgres:// URL selects PostgreSQL (pgx), which
// several tailgate processes can share. The queries are written once with
// ? placeholders and rebound to $1, $2... for PostgreSQL.
//
// The schema is a numbered list of SQL migrations embedded in the binary
// (migrations/NNNN_name.sql, in SQLite's dialect or portable SQL), each
// applied once, in order, and recorded in the schema_version table; a
// migration whose SQL cannot be portable has a PostgreSQL variant of the
// same name in migrations/postgres/. [Open] applies whatever is missing
// and refuses a database written by a newer tailgate. On SQLite each
// migration is a transaction of its own; on PostgreSQL all the missing
// ones are one transaction holding an advisory lock, so processes that
// start together on one database apply each migration exactly once (the
// others wait, then find nothing to do).
//
// Tenancy: every method that touches an environment or what hangs off it
// takes the caller's org id and puts it in the query's WHERE clause. Asking
// for another org's environment, by name or by id, is ErrNotFound, exactly
// as if it did not exist, so ids cannot be probed across orgs.
//
// Secrets: API tokens are kept only as SHA-256 hashes (a token is random
// and 256 bits long, so a plain hash is enough, and a lookup by hash leaks
// nothing useful through timing); [Store.CreateAPIToken] returns the token
// once. The OAuth client secret arrives already sealed by package vault
// and is stored as key id, nonce and ciphertext; the store never sees it in
// the clear.
//
// # Usage
//
//	st, err := store.Open(ctx, "/var/lib/tailgate/tailgate.db") // or "postgres://tailgate@db.internal/tailgate"
//	defer st.Close()
//	org, _ := st.CreateOrg(ctx, "Acme")
//	token, _, _ := st.CreateAPIToken(ctx, org.ID, "ci", store.RoleAdmin) // show once
//	p, err := st.Authenticate(ctx, token)                                // on every request
//	env, err := st.CreateEnvironment(ctx, p.OrgID, "staging")
//
// Errors: [ErrNotFound], [ErrConflict] (a name already taken, or an
// environment still connected), [ErrUnauthenticated]; test with errors.Is.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/base32"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrNotFound: no such row for this org.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change clashes with what exists (a duplicate name,
	// or deleting an environment that is still connected).
	ErrConflict = errors.New("conflict")
	// ErrUnauthenticated: the API token is unknown, malformed or revoked.
	ErrUnauthenticated = errors.New("unauthenticated")
)

//go:embed migrations/*.sql migrations/postgres/*.sql
var migrationFiles embed.FS

// Store is the state database. It is safe for concurrent use.
type Store struct {
	sqlDB  *sql.DB
	db     queries // sqlDB, rebinding placeholders for the engine
	engine engine
	now    func() time.Time
}

// busyTimeout is how long a writer waits for another's transaction before
// failing with SQLITE_BUSY. Writes here are short; this only matters under
// bursts of concurrent writes.
const busyTimeout = 10 * time.Second

// Open opens the database dsn names and brings its schema up to date.
// dsn is either a PostgreSQL URL (postgres://user@host:port/db?..., as
// pgx reads it, so PGPASSWORD and a pgpass file work too) or the path of
// a SQLite file, created with mode 0600 if missing. Opening an up-to-date
// database changes nothing, so Open is safe to call on every start, also
// from several processes at once.
func Open(ctx context.Context, dsn string) (*Store, error) {
	if IsPostgres(dsn) {
		return openPostgres(ctx, dsn)
	}
	return openSQLite(ctx, dsn)
}

// Connection pool of a PostgreSQL store. Each tailgate process keeps at
// most this many connections: several replicas stay well inside
// PostgreSQL's default max_connections (100).
const (
	pgMaxConns     = 16
	pgConnIdleTime = 5 * time.Minute
)

func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", RedactDSN(dsn), err)
	}
	db.SetMaxOpenConns(pgMaxConns)
	db.SetMaxIdleConns(pgMaxConns)
	db.SetConnMaxIdleTime(pgConnIdleTime)
	s := newStore(db, enginePostgres)
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: migrate %s: %w", RedactDSN(dsn), err)
	}
	return s, nil
}

func newStore(db *sql.DB, e engine) *Store {
	return &Store{sqlDB: db, db: queries{db, e}, engine: e, now: func() time.Time { return time.Now().UTC() }}
}

func openSQLite(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty database path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create database directory: %w", err)
	}
	// Create the file ourselves so it is private from the start: it holds
	// sealed secrets and token hashes. SQLite gives its -wal and -shm files
	// the same mode.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("store: open database file: %w", err)
	} else {
		f.Close()
	}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(busyTimeout.Milliseconds(), 10))
	q.Set("_foreign_keys", "1")
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	// BEGIN IMMEDIATE: a transaction that will write takes the write lock
	// at its start, so two of them wait for each other (busy timeout)
	// instead of deadlocking on a read-to-write upgrade.
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := newStore(db, engineSQLite)
	// Switching a new file to WAL, and the first migration, take locks
	// that SQLite does not always wait for (it answers SQLITE_BUSY at
	// once when waiting could deadlock), so when several processes start
	// on one new file, the losers retry until the winner is done.
	deadline := time.Now().Add(busyTimeout)
	for attempt := 1; ; attempt++ {
		err = s.migrate(ctx)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
			continue
		}
		break
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: migrate %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.sqlDB.Close() }

type migration struct {
	version int
	name    string
	sql     string
}

// migrations lists the schema's migrations for engine e, in order: the
// shared files, each replaced by its variant in migrations/postgres/ on
// PostgreSQL when there is one.
func migrations(e engine) ([]migration, error) {
	shared, err := readMigrations("migrations")
	if err != nil {
		return nil, err
	}
	variants, err := readMigrations("migrations/postgres")
	if err != nil {
		return nil, err
	}
	byName := map[string]migration{}
	for _, m := range shared {
		byName[m.name] = m
	}
	for _, v := range variants {
		if _, ok := byName[v.name]; !ok {
			return nil, fmt.Errorf("migrations/postgres/%s has no migrations/%s: a variant must replace a shared migration of the same name", v.name, v.name)
		}
		if e == enginePostgres {
			byName[v.name] = v
		}
	}
	out := make([]migration, 0, len(shared))
	for _, m := range shared {
		out = append(out, byName[m.name])
	}
	return out, nil
}

func readMigrations(dir string) ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration file %s/%s is not named NNNN_name.sql", dir, e.Name())
		}
		b, err := migrationFiles.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	if dir != "migrations" {
		return out, nil // variants: a subset, checked against the shared list
	}
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migrations must be numbered 1, 2, 3...; %s is number %d", m.name, i+1)
		}
	}
	return out, nil
}

// SchemaVersion is the highest migration this binary knows.
func SchemaVersion() int {
	ms, err := migrations(engineSQLite)
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrationLock is the PostgreSQL advisory lock key that serialises
// migrations across processes: "tailgate" in ASCII.
const migrationLock int64 = 0x7461696c67617465

func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations(s.engine)
	if err != nil {
		return err
	}
	if s.engine == enginePostgres {
		// One transaction for all (PostgreSQL's DDL is transactional),
		// holding the advisory lock until it commits or rolls back, also
		// when this process dies: whoever comes second waits, then sees
		// the schema up to date.
		return s.tx(ctx, func(tx queries) error {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, migrationLock); err != nil {
				return fmt.Errorf("take the migration lock: %w", err)
			}
			return s.applyMigrations(ctx, tx, ms, func(f func(queries) error) error { return f(tx) })
		})
	}
	return s.applyMigrations(ctx, s.db, ms, func(f func(queries) error) error { return s.tx(ctx, f) })
}

// applyMigrations applies the migrations q's database lacks, each through
// inTx.
func (s *Store) applyMigrations(ctx context.Context, q queries, ms []migration, inTx func(func(queries) error) error) error {
	if _, err := q.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at BIGINT NOT NULL)`); err != nil {
		return err
	}
	var have int
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&have); err != nil {
		return err
	}
	if have > len(ms) {
		return fmt.Errorf("database schema is version %d, newer than this tailgate knows (%d); run a newer tailgate", have, len(ms))
	}
	for _, m := range ms {
		if m.version <= have {
			continue
		}
		err := inTx(func(tx queries) error {
			// Another process may have applied it since we looked.
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_version WHERE version = ?`, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, s.now().UnixMilli())
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// tx runs f in a write transaction, committing if it returns nil.
func (s *Store) tx(ctx context.Context, f func(queries) error) error {
	tx, err := s.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(queries{tx, s.engine}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// newID returns a random id with a readable prefix ("env_…"): 80 random
// bits in lower-case base32, unguessable and safe in URLs.
func newID(prefix string) string {
	return prefix + "_" + randomText(10)
}

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func randomText(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("store: crypto/rand failed: " + err.Error())
	}
	return b32.EncodeToString(b)
}

func ms(t time.Time) int64 { return t.UTC().UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMS(v.Int64)
}
