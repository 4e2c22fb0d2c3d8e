package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestReadyWhenReachableAndMigrated(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		s, _ := e.open(t)
		if err := s.Ready(context.Background()); err != nil {
			t.Fatalf("Ready on a freshly migrated database: %v", err)
		}
	})
}

func TestReadyFailsWhenTheSchemaIsBehindOrAhead(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, _ := e.open(t)
		want := SchemaVersion()
		// Another binary's view: the last migration not applied yet.
		if _, err := s.db.ExecContext(ctx, `DELETE FROM schema_version WHERE version = ?`, want); err != nil {
			t.Fatal(err)
		}
		err := s.Ready(ctx)
		if !errors.Is(err, ErrSchemaNotCurrent) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("Ready with the schema behind = %v, want ErrSchemaNotCurrent", err)
		}
		if !strings.Contains(err.Error(), "needs") {
			t.Errorf("the error does not say which version is needed: %v", err)
		}
		// Written by a newer tailgate.
		if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'x', 0), (?, 'y', 0)`, want, want+1); err != nil {
			t.Fatal(err)
		}
		if err := s.Ready(ctx); !errors.Is(err, ErrSchemaNotCurrent) {
			t.Fatalf("Ready with the schema ahead = %v, want ErrSchemaNotCurrent", err)
		}
	})
}

func TestReadyFailsWhenTheDatabaseIsClosed(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		s, _ := e.open(t)
		s.Close()
		if err := s.Ready(context.Background()); !errors.Is(err, ErrUnreachable) {
			t.Fatalf("Ready on a closed store = %v, want ErrUnreachable", err)
		}
	})
}
