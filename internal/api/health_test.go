package api

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/store"
)

// readiness GETs /readyz without a token.
func readiness(t *testing.T, base string) (int, Readiness) {
	t.Helper()
	a := call(t, base, "GET", "/readyz", "", nil)
	var r Readiness
	if err := json.Unmarshal(a.body, &r); err != nil {
		t.Fatalf("/readyz answered %d with no JSON: %s", a.status, a.body)
	}
	return a.status, r
}

func TestReadyzIsReadyWithoutAToken(t *testing.T) {
	h := newHarness(t)
	code, r := readiness(t, h.srv.URL)
	if code != 200 || r.Status != "ready" {
		t.Fatalf("/readyz = %d %+v, want 200 ready", code, r)
	}
}

func TestReadyzFailsWhenTheDatabaseIsClosed(t *testing.T) {
	h := newHarness(t)
	h.st.Close()
	code, r := readiness(t, h.srv.URL)
	if code != 503 || r.Status != "not_ready" || r.Reason != "database unreachable" {
		t.Fatalf("/readyz with the database closed = %d %+v, want 503 not_ready, database unreachable", code, r)
	}
	// Liveness does not depend on the database.
	h.mustStatus(h.do("GET", "/healthz", "", nil), 200, "healthz with the database closed")
}

func TestReadyzFailsWhenMigrationsAreBehind(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tailgate.db")
	st, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := httptest.NewServer(New(Options{Store: st, PrivateNetwork: &fakeNetwork{st: st}}))
	defer srv.Close()
	// The database as an older tailgate left it: the newest migration
	// is not recorded.
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `DELETE FROM schema_version WHERE version = ?`, store.SchemaVersion()); err != nil {
		t.Fatal(err)
	}
	code, r := readiness(t, srv.URL)
	if code != 503 || r.Status != "not_ready" || !strings.Contains(r.Reason, "migrations not current") {
		t.Fatalf("/readyz with the schema behind = %d %+v, want 503 naming the migrations", code, r)
	}
	if strings.Contains(r.Reason, path) {
		t.Errorf("the reason names the database path: %q", r.Reason)
	}
}
