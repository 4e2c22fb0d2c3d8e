// Package pgtest runs a throwaway PostgreSQL server for tests.
//
// # Overview
//
// Tests that need PostgreSQL start their own cluster from the server
// binaries on the machine (Debian's postgresql package puts them in
// /usr/lib/postgresql/VERSION/bin): initdb in a temporary directory, then
// postgres listening on a free port of 127.0.0.1 with its unix socket in
// that same directory, so nothing on the host (a system cluster, its port
// 5432, /var/run/postgresql) is used or disturbed. PostgreSQL refuses to
// run as root, so when the test runs as root the cluster runs as the
// unprivileged user nobody, owning the temporary directory.
//
// One cluster serves a whole test binary: it starts on first use and
// stops when [Main] returns. Each test gets a fresh database of its own
// from [NewDatabase], owned by an unprivileged role, so tests cannot see
// each other's rows and the code under test is shown to need no superuser.
//
// Where the binaries are absent the tests that need them are skipped with
// a message saying what to install; under CI (the CI environment variable
// set) they fail instead, so the PostgreSQL suite cannot silently vanish.
//
// # Usage
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.NewDatabase(t) // postgres://tailgate@127.0.0.1:PORT/t_N?sslmode=disable
//		...
//	}
package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/testtcp"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// ErrNotInstalled: the PostgreSQL server binaries were not found.
var ErrNotInstalled = errors.New("PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or on PATH; install them (Debian: apt-get install postgresql) to run the PostgreSQL tests")

// Role is the unprivileged role that owns every database [NewDatabase]
// makes: it may create tables in its database and nothing else.
const Role = "tailgate"

// superuser is the cluster's bootstrap superuser, used only by the helper.
const superuser = "postgres"

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	// Dir is the temporary directory holding the data directory
	// (Dir/data), the unix socket (Dir) and the server log (Dir/log).
	Dir string
	// Port is the TCP port on 127.0.0.1.
	Port int

	bin  string
	cmd  *exec.Cmd
	exit chan struct{} // closed when the postgres process has exited
	// stop asks postgres to stop (SIGQUIT, its immediate shutdown; exec
	// kills it 10 s later).
	stop  context.CancelFunc
	admin *sql.DB // superuser connection to the postgres database
	seq   atomic.Int64
}

// debianBinGlob is where Debian's postgresql package puts the server.
var debianBinGlob = "/usr/lib/postgresql/*/bin"

// Bin finds the directory of the PostgreSQL server binaries: the newest
// /usr/lib/postgresql/VERSION/bin (Debian), else initdb and postgres on
// PATH.
func Bin() (string, error) {
	dirs, _ := filepath.Glob(debianBinGlob)
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if q, err := exec.LookPath("postgres"); err == nil && filepath.Dir(p) == filepath.Dir(q) {
			return filepath.Dir(p), nil
		}
	}
	return "", ErrNotInstalled
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Start initialises and starts a cluster. Stop it with [Cluster.Stop].
// settings ("name=value") override the server's configuration, which by
// default trades durability for speed (fsync, synchronous_commit and
// full_page_writes off); a benchmark wants them on.
func Start(ctx context.Context, settings ...string) (*Cluster, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, bin: bin}
	cred, err := runAs(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "--pgdata", filepath.Join(dir, "data"),
		"--username", superuser, "--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	// The free port is found by binding and letting go of it; another
	// process may take it in between, so try a few.
	for attempt := 0; ; attempt++ {
		err = c.startServer(ctx, cred, settings)
		if err == nil || attempt == 4 || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// runAs returns who the server runs as: nil (the test's own user) unless
// that is root, which PostgreSQL refuses; then nobody, given dir.
func runAs(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root and no user nobody to run PostgreSQL as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("pgtest: give %s to nobody: %w", dir, err)
	}
	// nobody must be able to reach dir: the temporary directory's parents
	// are normally world-searchable (/tmp), but TMPDIR may point anywhere.
	for p := filepath.Dir(dir); p != "/"; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil || st.Mode()&0o001 == 0 {
			return nil, fmt.Errorf("pgtest: %s is not searchable by nobody, who runs PostgreSQL when tests run as root; set TMPDIR to a directory under /tmp", p)
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (c *Cluster) startServer(ctx context.Context, cred *syscall.Credential, settings []string) error {
	port, err := testtcp.PickPort()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(c.Dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	// Durability is worthless in a throwaway cluster: no fsync, no full
	// page writes. Small buffers: the machine is shared.
	args := []string{"-D", filepath.Join(c.Dir, "data"), "-p", strconv.Itoa(port), "-k", c.Dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB", "-c", "max_connections=200",
		"-c", "logging_collector=off"}
	for _, kv := range settings {
		args = append(args, "-c", kv) // the last -c of a name wins
	}
	cmdCtx, stop := context.WithCancel(context.Background())
	cmd := exec.CommandContext(cmdCtx, filepath.Join(c.bin, "postgres"), args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies (a panic, go test's timeout) the server gets
	// SIGQUIT, PostgreSQL's immediate shutdown, instead of living on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := cmd.Start(); err != nil {
		stop()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exit := make(chan struct{})
	go func() { cmd.Wait(); close(exit) }()
	c.cmd, c.exit, c.stop, c.Port = cmd, exit, stop, port

	admin, err := sql.Open("pgx", c.url(superuser, "postgres"))
	if err != nil {
		c.kill()
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = admin.PingContext(pctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exit:
			admin.Close()
			log, _ := os.ReadFile(filepath.Join(c.Dir, "log"))
			return fmt.Errorf("pgtest: postgres exited on port %d:\n%s", port, bytes.TrimSpace(log))
		case <-ctx.Done():
			admin.Close()
			c.kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			admin.Close()
			c.kill()
			return fmt.Errorf("pgtest: postgres did not accept connections within a minute: %w", err)
		}
	}
	if _, err := admin.ExecContext(ctx, `CREATE ROLE `+Role+` LOGIN`); err != nil {
		admin.Close()
		c.kill()
		return fmt.Errorf("pgtest: create role: %w", err)
	}
	c.admin = admin
	return nil
}

func (c *Cluster) url(user, db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(user), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)), Path: "/" + db}
	return u.String() + "?sslmode=disable"
}

func (c *Cluster) kill() {
	c.stop()
	<-c.exit
}

// CreateDatabase creates an empty database owned by [Role] and returns
// its URL (connecting as that role over TCP).
func (c *Cluster) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t_%d", c.seq.Add(1))
	if _, err := c.admin.ExecContext(ctx, `CREATE DATABASE `+name+` OWNER `+Role); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return c.url(Role, name), nil
}

// DropDatabase drops a database made by CreateDatabase, closing whatever
// connections it still has.
func (c *Cluster) DropDatabase(ctx context.Context, dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	if !strings.HasPrefix(name, "t_") {
		return fmt.Errorf("pgtest: %q is not a test database", name)
	}
	_, err = c.admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	return err
}

// Admin is a superuser connection to the cluster, for what a test needs
// beyond its own database (a CHECKPOINT, pg_stat views).
func (c *Cluster) Admin() *sql.DB { return c.admin }

// DataDir is the cluster's data directory.
func (c *Cluster) DataDir() string { return filepath.Join(c.Dir, "data") }

// Stop shuts the server down (fast shutdown) and removes its directory.
func (c *Cluster) Stop() error {
	if c.admin != nil {
		c.admin.Close()
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exit:
	case <-time.After(30 * time.Second):
		c.kill()
	}
	return os.RemoveAll(c.Dir)
}

// The cluster shared by one test binary.
var shared struct {
	sync.Mutex
	main    bool // Main is running the tests
	started bool
	c       *Cluster
	err     error
}

// Main runs the tests and then stops the shared cluster, if a test
// started it. Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	shared.Lock()
	shared.main = true
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	defer shared.Unlock()
	if shared.c != nil {
		if err := shared.c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop: %v\n", err)
		}
		shared.c = nil
	}
	return code
}

// Shared returns the test binary's cluster, starting it on first use. It
// skips the test when PostgreSQL is not installed (fails under CI) and
// fails it when the package has no TestMain calling [Main].
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if !shared.main {
		t.Fatal("pgtest: call pgtest.Main from the package's TestMain, so the shared cluster is stopped after the tests")
	}
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		shared.c, shared.err = Start(ctx)
		cancel()
	}
	if errors.Is(shared.err, ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skip("pgtest: " + shared.err.Error())
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.c
}

// NewDatabase returns the URL of a fresh, empty database on the shared
// cluster, owned by [Role]; it is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	c := Shared(t)
	u, err := c.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.DropDatabase(context.Background(), u); err != nil {
			t.Errorf("pgtest: drop database: %v", err)
		}
	})
	return u
}
