package store

import (
	"context"
	"reflect"
	"sort"
	"testing"
)

func TestRebindNumbersPlaceholdersForPostgresOnly(t *testing.T) {
	for _, c := range []struct{ in, pg string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE a = ? AND b = ?`, `SELECT a FROM t WHERE a = $1 AND b = $2`},
		{`VALUES (?, 'a?b', "c?", ?)`, `VALUES ($1, 'a?b', "c?", $2)`},
		{`SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
		{`?,?,?,?,?,?,?,?,?,?,?`, `$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11`},
	} {
		if got := enginePostgres.rebind(c.in); got != c.pg {
			t.Errorf("postgres rebind(%q) = %q, want %q", c.in, got, c.pg)
		}
		if got := engineSQLite.rebind(c.in); got != c.in {
			t.Errorf("sqlite rebind(%q) = %q, want it unchanged", c.in, got)
		}
	}
}

func TestRedactDSNHidesPasswords(t *testing.T) {
	for in, want := range map[string]string{
		"/var/lib/tailgate/tailgate.db":                               "/var/lib/tailgate/tailgate.db",
		"postgres://tailgate:s3cret@db:5432/tailgate?sslmode=require": "postgres://tailgate:xxxxx@db:5432/tailgate?sslmode=require",
		"postgresql://db/tailgate?password=s3cret&user=tg":            "postgresql://db/tailgate?password=xxxxx&user=tg",
		"postgres://tailgate@db/tailgate":                             "postgres://tailgate@db/tailgate",
	} {
		if got := RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPostgresMigrationsReplaceSharedOnesOfTheSameName(t *testing.T) {
	lite, err := migrations(engineSQLite)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := migrations(enginePostgres)
	if err != nil {
		t.Fatal(err)
	}
	if len(lite) != len(pg) {
		t.Fatalf("%d SQLite migrations, %d PostgreSQL ones", len(lite), len(pg))
	}
	for i := range lite {
		if lite[i].name != pg[i].name || lite[i].version != pg[i].version {
			t.Errorf("migration %d: %s on SQLite, %s on PostgreSQL", i+1, lite[i].name, pg[i].name)
		}
	}
}

// The per-engine variants of the migrations must build the same tables
// with the same columns and indexes.
func TestEnginesHaveTheSameSchema(t *testing.T) {
	ctx := context.Background()
	schema := map[string][]string{}
	for _, e := range testEngines {
		t.Run(e.name, func(t *testing.T) {
			s, _ := e.open(t)
			q := `SELECT m.name || '.' || p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
				WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
				UNION ALL SELECT 'index ' || name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'`
			if e.name == "postgres" {
				// orgs.rowid stands in for SQLite's implicit rowid.
				q = `SELECT table_name || '.' || column_name FROM information_schema.columns
					WHERE table_schema = current_schema() AND NOT (table_name = 'orgs' AND column_name = 'rowid')
					UNION ALL SELECT 'index ' || indexname FROM pg_indexes
					WHERE schemaname = current_schema() AND indexname NOT LIKE '%\_pkey' AND indexname NOT LIKE '%\_key'`
			}
			rows, err := s.db.QueryContext(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var got []string
			for rows.Next() {
				var c string
				rows.Scan(&c)
				got = append(got, c)
			}
			sort.Strings(got)
			if len(got) < 50 {
				t.Fatalf("schema read back as %v: too small to be the whole schema", got)
			}
			schema[e.name] = got
		})
	}
	if lite, pg := schema["sqlite"], schema["postgres"]; pg != nil && !reflect.DeepEqual(lite, pg) {
		t.Errorf("schemas differ:\nsqlite   %v\npostgres %v", lite, pg)
	}
}
