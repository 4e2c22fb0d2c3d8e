package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/netnstest"
	"github.com/tailgate-dev/tailgate/internal/pgtest"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

// TestRunFromAnotherHostSurvivesAReplica is a platform's deployment on two
// hosts made of network namespaces. The server host holds the tailnet
// (tailgate sandbox on its veth address) and two tailgate serve replicas
// on one PostgreSQL (reached over its unix socket: the database's host is
// this test's, the replicas' network is the server namespace's). The
// runner host reaches the server host only through a veth. There,
// tailgate run --server <replica B> reaches the private app by its
// internal name, with its node joined from the runner host; replica A is
// killed with SIGKILL mid-run and the run goes on; heartbeats and the end
// go through B; the node leaves the tailnet; both replicas' views (A
// restarted) show the run ended.
func TestRunFromAnotherHostSurvivesAReplica(t *testing.T) {
	netnstest.Require(t)
	needCommand(t, "curl")
	if _, err := pgtest.Bin(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	srv := netnstest.New(t, "tgsrv")
	rnr := netnstest.New(t, "tgrnr")
	netnstest.Link(t, srv, "eth0", []string{"198.18.1.1/24"}, rnr, "eth0", []string{"198.18.1.2/24"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The database, by its unix socket, which crosses namespaces.
	db := pgtest.NewDatabase(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	cluster := pgtest.Shared(t)
	q := u.Query()
	q.Set("host", cluster.Dir)
	q.Set("port", u.Port())
	u.Host, u.RawQuery = "", q.Encode()
	dbSock := u.String()

	// The tailnet, on the server host's veth address.
	sb := startProcess(t, srv.Command(os.Args[0], "sandbox", "--listen", "198.18.1.1"), nil)
	sb.waitLine(t, ctx, "# ready")
	printed := map[string]string{}
	for _, l := range strings.Split(sb.output(), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && regexp.MustCompile(`^[A-Z_]+$`).MatchString(k) {
			printed[k] = strings.Trim(v, "'")
		}
	}
	apiToken, tsAPI := printed["TAILSCALE_API_TOKEN"], printed["TAILGATE_TAILSCALE_API"]
	if apiToken == "" || tsAPI == "" || printed["TAILGATE_CONTROL_URL"] == "" {
		t.Fatalf("tailgate sandbox printed no environment:\n%s", sb.output())
	}
	env := []string{"TAILGATE_TAILSCALE_API=" + tsAPI, "TAILGATE_CONTROL_URL=" + printed["TAILGATE_CONTROL_URL"]}
	key, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	env = append(env, "TAILGATE_TEST_VAULT_KEY="+key)

	listening := regexp.MustCompile(`listening on (http://198\.18\.1\.1:\d+)`)
	replica := func(name string) (*subprocess, string) {
		dir := t.TempDir()
		p := startProcess(t, srv.Command(os.Args[0], "serve", "--db", dbSock, "--key-env", "TAILGATE_TEST_VAULT_KEY",
			"--listen", "198.18.1.1:0", "--run-lease", "3s", "--verify-every", "0"), append(env, "HOME="+dir))
		m := listening.FindStringSubmatch(p.waitLine(t, ctx, "listening on http://"))
		if m == nil {
			t.Fatalf("replica %s did not say where it listens:\n%s", name, p.output())
		}
		return p, m[1]
	}
	a, urlA := replica("A")
	admin := tokenLine.FindString(a.output())
	if admin == "" {
		t.Fatalf("replica A printed no first admin token:\n%s", a.output())
	}
	b, urlB := replica("B")
	if tokenLine.FindString(b.output()) != "" {
		t.Errorf("replica B made a second first-admin token:\n%s", b.output())
	}

	// An admin connects the environment through replica A, from the
	// runner host.
	cli := []string{"TAILGATE_TOKEN=" + admin}
	inRunner := func(stdin string, args ...string) string {
		t.Helper()
		cmd := rnr.Command(append([]string{os.Args[0]}, args...)...)
		cmd.Env = append(os.Environ(), append(cli, "TAILGATE_TEST_MAIN=1")...)
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("tailgate %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	inRunner("", "env", "create", "web", "--server", urlA)
	inRunner(apiToken+"\n", "env", "connect", "web", "--server", urlA, "--target", sandbox.DemoAppName+":80")

	// The run, from the runner host, through replica B. Its command
	// fetches the private app, waits while the test kills replica A, and
	// fetches it again.
	app := "http://" + sandbox.DemoAppName + "/"
	script := `curl -sf ` + app + ` >/dev/null && echo "first fetch ok"; echo "waiting"; sleep 9; curl -sf ` + app + ` >/dev/null && echo "second fetch ok"`
	run := startProcess(t, rnr.Command(os.Args[0], "run", "--server", urlB, "--env", "web", "--", "sh", "-c", script), cli)
	ready := readyLine.FindStringSubmatch(run.waitLine(t, ctx, "ready: proxy"))
	if ready == nil {
		t.Fatalf("no ready line:\n%s", run.output())
	}
	runID := ready[1]
	run.waitLine(t, ctx, "waiting")
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.wait(t, 30*time.Second)
	if code := run.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("the run's command exited %d after replica A was killed:\n%s", code, run.output())
	}
	out := run.output()
	for _, want := range []string{"joined the tailnet from this host", "first fetch ok", "second fetch ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q:\n%s", want, out)
		}
	}

	// Both replicas' views: B's now, A's once restarted.
	curl := func(args ...string) string {
		t.Helper()
		out, err := rnr.Command(append([]string{"curl", "-s", "--max-time", "10"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	view := func(base string) map[string]any {
		got := curl("-H", "Authorization: Bearer "+admin, base+"/v1/runs/"+runID)
		var m map[string]any
		json.Unmarshal([]byte(got), &m)
		return m
	}
	if v := view(urlB); v["state"] != "ended" {
		t.Errorf("replica B's view of the run: %v", v)
	}
	_, urlA2 := replica("A again")
	if v := view(urlA2); v["state"] != "ended" {
		t.Errorf("restarted replica A's view of the run: %v", v)
	}
	// The run's node left the tailnet.
	node, _ := view(urlB)["node"].(string)
	deadline := time.Now().Add(30 * time.Second)
	for {
		devs := curl("-u", apiToken+":", tsAPI+"/api/v2/tailnet/-/devices")
		if node != "" && !strings.Contains(devs, node) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %q still in the tailnet:\n%s", node, devs)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
