package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// engine is the database behind a Store. The store's SQL is written once,
// for both: where the dialects differ, the engine says how (placeholders,
// row locks, error codes), and the migrations have per-engine variants.
type engine int

const (
	engineSQLite engine = iota
	enginePostgres
)

func (e engine) String() string {
	if e == enginePostgres {
		return "postgres"
	}
	return "sqlite"
}

// IsPostgres reports whether dsn names a PostgreSQL database
// (postgres://... or postgresql://...) rather than a SQLite file.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// RedactDSN is dsn as it may be logged or shown: a PostgreSQL URL's
// password is replaced by "xxxxx", as are the password query parameters
// libpq and pgx accept. A SQLite path is returned as is.
func RedactDSN(dsn string) string {
	if !IsPostgres(dsn) {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	q := u.Query()
	for _, k := range []string{"password", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.Redacted()
}

// rebind turns the store's ? placeholders into what the engine's driver
// takes: SQLite takes ? as written; PostgreSQL (pgx) wants $1, $2, ...
// A ? inside a quoted string or identifier is left alone.
func (e engine) rebind(query string) string {
	if e != enginePostgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	var quote byte // the quote we are inside, or 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0 // a doubled quote closes and reopens: same result
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// forUpdate is the clause that locks the rows a SELECT reads until the
// transaction ends. SQLite needs none: a write transaction there holds
// the whole database (BEGIN IMMEDIATE).
func (e engine) forUpdate() string {
	if e == enginePostgres {
		return " FOR UPDATE"
	}
	return ""
}

// isUnique reports whether err is a UNIQUE or PRIMARY KEY violation.
func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505" // unique_violation
	}
	return false
}

// isBusy reports whether err is SQLite's "database is locked" (or a
// related locking code).
func isBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		code := se.Code() & 0xff
		return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
	}
	return false
}

// sqlRunner is what *sql.DB, *sql.Tx and *sql.Conn have in common.
type sqlRunner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// queries runs the store's SQL on a database or inside a transaction,
// rebinding placeholders for the engine.
type queries struct {
	r      sqlRunner
	engine engine
}

func (q queries) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return q.r.ExecContext(ctx, q.engine.rebind(query), args...)
}

func (q queries) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return q.r.QueryContext(ctx, q.engine.rebind(query), args...)
}

func (q queries) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return q.r.QueryRowContext(ctx, q.engine.rebind(query), args...)
}

// scanner is a row to read: *sql.Row, or *sql.Rows at a row.
type scanner interface{ Scan(...any) error }

// queryAll runs query and reads every row with scan, in order: the loop
// the list methods share. Errors begin "store: <what>:".
func queryAll[T any](ctx context.Context, q queries, what string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// execOne runs a statement that must change a row: an error begins
// "store: <doing>:", and a statement that changed none is ErrNotFound,
// as "store: <row>: not found" (the row the caller names was not there,
// or not in the state the statement needs).
func execOne(ctx context.Context, q queries, doing, row, query string, args ...any) error {
	res, err := q.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("store: %s: %w", doing, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: %s: %w", row, ErrNotFound)
	}
	return nil
}
