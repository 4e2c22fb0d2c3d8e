// Package hstest runs a real headscale control server on loopback for
// tailgate's tests: the one control server here that enforces policy, so the
// tests that prove least privilege run against it.
//
// # Overview
//
// Start launches the headscale binary (v0.29.2, built by
// tools/headscale/build.sh) as a subprocess in a temporary directory:
// sqlite, policy.mode database, no Internet DERP (a DERP and STUN server run
// in the test process and headscale gets a one-region map pointing at
// them), batch delays tuned down so nodes come up in ~100 ms. No HEADSCALE_*
// variable of the caller's environment reaches it. The CLI is used only to
// create a user and an API key; everything after that is REST (package
// headscale).
//
// The first node is the "router" (RouterIP, 100.64.0.1, because headscale
// numbers nodes sequentially): it advertises RouterSubnet (192.0.2.0/24) and
// OtherSubnet (198.51.100.0/24), serves in-process apps at addresses inside
// them (ServeApp; nothing is ever forwarded to the host network) and answers
// DNS for Zone on port 53 of its tailnet address, which headscale's split
// DNS config sends Zone's queries to. Its routes are not approved: tests
// approve them through the API, as a person would.
//
// Everything stops in t.Cleanup: nodes, headscale (SIGTERM, then SIGKILL),
// the relay, and the directory.
//
// Tests skip, saying how to build it, when the binary is missing. It is
// found at $TAILGATE_HEADSCALE or in the build script's cache directory.
package hstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/headscale"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

// Version is the headscale release the harness runs.
const Version = "v0.29.2"

// The router's fixed facts.
var (
	RouterIP     = netip.MustParseAddr("100.64.0.1")
	RouterSubnet = netip.MustParsePrefix("192.0.2.0/24")
	OtherSubnet  = netip.MustParsePrefix("198.51.100.0/24")
)

// Zone is the internal DNS zone the router answers for (split DNS).
const Zone = "corp.test"

// User is the headscale user the harness creates; it owns the base
// policy's tags.
const User = "tailgate"

// BasePolicy is the policy Start writes before the router joins: the
// router's tag, and DNS on the router open to every node (a customer's
// internal resolver must be reachable for split DNS to work).
const BasePolicy = `{
	// the customer's own entries
	"tagOwners": {
		"tag:router": ["tailgate@"],
	},
	"grants": [
		{"src": ["*"], "dst": ["tag:router"], "ip": ["53"]},
	],
}
`

// Binary returns the headscale binary: $TAILGATE_HEADSCALE, or where
// tools/headscale/build.sh puts it.
func Binary() (string, error) {
	if p := os.Getenv("TAILGATE_HEADSCALE"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("TAILGATE_HEADSCALE=%s: %w", p, err)
		}
		return p, nil
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache")
	}
	p := filepath.Join(cache, "tailgate", "headscale-"+Version, "headscale")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("headscale %s not built (%s missing): run tools/headscale/build.sh or set TAILGATE_HEADSCALE", Version, p)
	}
	return p, nil
}

// Server is a running headscale with its router node.
type Server struct {
	// URL is headscale's server_url, the ControlURL nodes join.
	URL string
	// APIKey is an admin API key (valid for an hour).
	APIKey string
	Dir    string

	t      testing.TB
	cmd    *exec.Cmd
	exited chan struct{}
	// stopCmd asks headscale to stop (SIGTERM; exec kills it 10 s later).
	stopCmd context.CancelFunc
	relay   *sandbox.Relay
	router  *tailnet.Node
	logf    func(string, ...any)

	mu    sync.Mutex
	site  *sandbox.Site
	nodes []*tailnet.Node
}

// Options change Start; the zero value is what most tests want.
type Options struct {
	// Verbose sends headscale's and tsnet's logs to t.Logf.
	Verbose bool
}

// Start runs headscale and its router, or skips the test if the binary is
// missing.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skipf("hstest: %v", err)
	}
	s := &Server{t: t, exited: make(chan struct{})}
	s.logf = func(string, ...any) {}
	if opts.Verbose {
		s.logf = t.Logf
	}
	// The unix socket path must stay under 108 bytes; t.TempDir's can
	// be long, so use a short directory of our own.
	s.Dir, err = os.MkdirTemp("", "hs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)

	s.relay, err = sandbox.StartRelay(s.logf)
	if err != nil {
		t.Fatalf("hstest: relay: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s.URL = "http://" + addr
	if err := s.writeConfig(addr); err != nil {
		t.Fatalf("hstest: config: %v", err)
	}

	cmdCtx, stopCmd := context.WithCancel(context.Background())
	s.stopCmd = stopCmd
	s.cmd = exec.CommandContext(cmdCtx, bin, "serve", "--config", filepath.Join(s.Dir, "config.yaml"))
	s.cmd.Cancel = func() error { return s.cmd.Process.Signal(syscall.SIGTERM) }
	s.cmd.WaitDelay = 10 * time.Second
	s.cmd.Env = cleanEnv()
	s.cmd.Dir = s.Dir
	s.cmd.Stdout = logWriter{s.logf}
	s.cmd.Stderr = logWriter{s.logf}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("hstest: start headscale: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	if err := s.waitHealthy(15 * time.Second); err != nil {
		t.Fatalf("hstest: %v", err)
	}

	if _, err := s.cli("users", "create", User); err != nil {
		t.Fatalf("hstest: create user: %v", err)
	}
	out, err := s.cli("apikeys", "create", "--expiration", "1h", "-o", "json")
	if err != nil {
		t.Fatalf("hstest: create API key: %v", err)
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &s.APIKey); err != nil || s.APIKey == "" {
		t.Fatalf("hstest: API key: unexpected output (%d bytes)", len(out))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Admin().SetPolicy(ctx, []byte(BasePolicy), ""); err != nil {
		t.Fatalf("hstest: base policy: %v", err)
	}
	if err := s.startRouter(ctx); err != nil {
		t.Fatalf("hstest: %v", err)
	}
	return s
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HEADSCALE_") {
			env = append(env, kv)
		}
	}
	return env
}

type logWriter struct{ logf func(string, ...any) }

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.logf("headscale: %s", line)
	}
	return len(p), nil
}

func (s *Server) writeConfig(addr string) error {
	derp, err := derpMapYAML(s.relay)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "derp.yaml"), derp, 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`server_url: http://%[1]s
listen_addr: %[1]s
metrics_listen_addr: ""
grpc_listen_addr: 127.0.0.1:0
grpc_allow_insecure: false
disable_check_updates: true
noise: {private_key_path: %[2]s/noise_private.key}
prefixes: {v4: 100.64.0.0/10, v6: fd7a:115c:a1e0::/48, allocation: sequential}
derp: {server: {enabled: false}, urls: [], paths: [%[2]s/derp.yaml], auto_update_enabled: false}
node: {ephemeral: {inactivity_timeout: 66s}}
database: {type: sqlite, sqlite: {path: %[2]s/db.sqlite, write_ahead_log: true}}
log: {level: info, format: text}
policy: {mode: database}
dns:
  magic_dns: true
  base_domain: hs.test
  override_local_dns: false
  nameservers:
    split:
      %[3]s: [%[4]s]
unix_socket: %[2]s/hs.sock
unix_socket_permission: "0770"
logtail: {enabled: false}
tuning: {batch_change_delay: 50ms, node_store_batch_timeout: 10ms}
`, addr, s.Dir, Zone, RouterIP)
	return os.WriteFile(filepath.Join(s.Dir, "config.yaml"), []byte(cfg), 0o600)
}

func (s *Server) waitHealthy(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("headscale exited at start (%v); run with Options.Verbose for its log", s.cmd.ProcessState)
		default:
		}
		resp, err := http.Get(s.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("headscale not healthy after %v", limit)
}

// cli runs a headscale CLI command against the server's unix socket.
func (s *Server) cli(args ...string) ([]byte, error) {
	bin, _ := Binary()
	cmd := exec.Command(bin, append([]string{"--config", filepath.Join(s.Dir, "config.yaml")}, args...)...)
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("headscale %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Admin is a REST client with the admin API key.
func (s *Server) Admin() *headscale.Client { return headscale.New(s.URL, s.APIKey) }

// Router is the router node.
func (s *Server) Router() *tailnet.Node { return s.router }

// PID is the headscale process's id, for benchmarks that measure its
// memory apart from the test process's.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Nodes lists headscale's nodes over REST.
func (s *Server) Nodes(ctx context.Context) ([]tsapi.Device, error) { return s.Admin().Devices(ctx) }

// ServeApp serves h at addr behind the router (inside RouterSubnet or
// OtherSubnet).
func (s *Server) ServeApp(addr netip.AddrPort, h http.Handler) {
	if err := s.site.ServeApp(addr, h); err != nil {
		s.t.Fatal(err)
	}
}

// AddName publishes name (under Zone) in the router's DNS.
func (s *Server) AddName(name string, addrs ...netip.Addr) {
	if err := s.site.AddName(name, addrs...); err != nil {
		s.t.Fatal(err)
	}
}

// Join joins an ephemeral node with a fresh single-use key carrying tags.
// The harness closes it in cleanup if the test has not.
func (s *Server) Join(ctx context.Context, hostname string, tags []string, routes ...netip.Prefix) (*tailnet.Node, error) {
	key, err := s.Admin().CreateAuthKey(ctx, tsapi.AuthKeyRequest{Ephemeral: true, Tags: tags, Expiry: 10 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("join %s: key: %w", hostname, err)
	}
	n, err := tailnet.Join(ctx, tailnet.JoinOptions{
		// No advertised tags: headscale refuses them from nodes joining
		// with a pre-auth key, whose own tags the node gets.
		ControlURL: s.URL, AuthKey: key.Key, Hostname: hostname,
		AcceptRoutes: true, AdvertiseRoutes: routes, Logf: s.logf,
	})
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", hostname, err)
	}
	s.mu.Lock()
	s.nodes = append(s.nodes, n)
	s.mu.Unlock()
	return n, nil
}

// ApproveRouterSubnet approves the router's route to RouterSubnet, so
// that nodes accepting routes reach the apps served there.
func (s *Server) ApproveRouterSubnet(ctx context.Context) error {
	id, err := s.RouterID(ctx)
	if err != nil {
		return err
	}
	return s.Admin().ApproveRoutes(ctx, id, []netip.Prefix{RouterSubnet})
}

// RouterID is the router's node id in headscale.
func (s *Server) RouterID(ctx context.Context) (string, error) {
	devs, err := s.Nodes(ctx)
	if err != nil {
		return "", err
	}
	for _, d := range devs {
		for _, a := range d.Addresses {
			if a == RouterIP {
				return d.ID, nil
			}
		}
	}
	return "", fmt.Errorf("router %v not in headscale's node list", RouterIP)
}

func (s *Server) startRouter(ctx context.Context) error {
	n, err := s.Join(ctx, "router", []string{"tag:router"}, RouterSubnet, OtherSubnet)
	if err != nil {
		return err
	}
	s.router = n
	if n.IPv4() != RouterIP {
		return fmt.Errorf("router joined as %v, want %v (split DNS names it)", n.IPv4(), RouterIP)
	}
	// Apps behind the router and the split-DNS zone, as on the sandbox.
	site, err := sandbox.ServeSite(n, Zone, []netip.Prefix{RouterSubnet, OtherSubnet}, s.logf)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.site = site
	s.mu.Unlock()
	return nil
}

func (s *Server) close() {
	s.mu.Lock()
	nodes := s.nodes
	s.nodes = nil
	site := s.site
	s.mu.Unlock()
	if site != nil {
		site.Close()
	}
	for _, n := range nodes {
		n.Close()
	}
	if s.cmd != nil && s.cmd.Process != nil {
		s.stopCmd()
		<-s.exited
	}
	if s.relay != nil {
		s.relay.Close()
	}
	if s.Dir != "" {
		os.RemoveAll(s.Dir)
	}
}
