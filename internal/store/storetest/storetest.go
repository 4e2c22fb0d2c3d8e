// Package storetest opens a tailgate store for a test that needs one of
// its own: an empty, migrated SQLite database in the test's temporary
// directory, closed when the test ends. Tests of a whole server use
// tailgatetest instead, which also creates orgs, tokens and a vault key.
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/store"
)

// Open opens a new store in t's temporary directory.
func Open(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "tailgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
