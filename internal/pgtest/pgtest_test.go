package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestNewDatabaseIsFreshAndOwnedByAnUnprivilegedRole(t *testing.T) {
	ctx := context.Background()
	a, b := NewDatabase(t), NewDatabase(t)
	if a == b {
		t.Fatalf("two tests' databases share a URL: %s", a)
	}
	db, err := sql.Open("pgx", a)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var user string
	var super bool
	if err := db.QueryRowContext(ctx, `SELECT current_user, usesuper FROM pg_user WHERE usename = current_user`).Scan(&user, &super); err != nil {
		t.Fatal(err)
	}
	if user != Role || super {
		t.Errorf("connected as %s (superuser %v), want %s without superuser", user, super, Role)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (x int)`); err != nil {
		t.Errorf("the role cannot create a table in its own database: %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("tables in a fresh database: %d, %v; want only the one just made", n, err)
	}
}

func TestClusterListensOnlyOnLoopbackWithItsSocketInItsDirectory(t *testing.T) {
	c := Shared(t)
	var listen, sockets string
	c.Admin().QueryRow(`SHOW listen_addresses`).Scan(&listen)
	c.Admin().QueryRow(`SHOW unix_socket_directories`).Scan(&sockets)
	if listen != "127.0.0.1" || sockets != c.Dir {
		t.Errorf("listen_addresses %q, unix_socket_directories %q; want 127.0.0.1 and %s", listen, sockets, c.Dir)
	}
	if !strings.HasPrefix(c.DataDir(), c.Dir) {
		t.Errorf("data directory %s is outside %s", c.DataDir(), c.Dir)
	}
}

func TestStartSaysWhatToInstallWithoutTheBinaries(t *testing.T) {
	defer func(g string) { debianBinGlob = g }(debianBinGlob)
	debianBinGlob = filepath.Join(t.TempDir(), "*", "bin")
	t.Setenv("PATH", t.TempDir())
	_, err := Start(context.Background())
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("Start without binaries: %v", err)
	}
}
