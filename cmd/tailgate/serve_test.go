package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/pgtest"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

var tokenLine = regexp.MustCompile(`tg_[a-z2-7]{52}`)

func TestServeFirstStartPrintsAnAdminTokenOnceAndStopsOnSIGTERM(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		testServeFirstStart(t, filepath.Join(t.TempDir(), "tailgate.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		// The test cluster trusts loopback, so any password will do: it
		// must never be printed or logged.
		u, err := url.Parse(pgtest.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(pgtest.Role, dbPassword)
		testServeFirstStart(t, u.String())
	})
}

const dbPassword = "db-password-never-shown"

func testServeFirstStart(t *testing.T, db string) {
	dir := t.TempDir()
	key := filepath.Join(dir, "tailgate.key")
	args := []string{"serve", "--db", db, "--key-file", key, "--listen", "127.0.0.1:0", "--log-format", "json",
		// Nothing here reaches Tailscale; the URLs only have to be valid.
		"--tailscale-api", "http://127.0.0.1:9", "--control-url", "http://127.0.0.1:9",
		// The Network Allowlist, public: the first addresses are active at once.
		"--egress-ips", "203.0.113.7,2001:db8::7"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	p := startTailgate(t, nil, args...)
	line := p.waitLine(t, ctx, "listening on http://")
	base := line[strings.Index(line, "http://"):]
	out := p.output()
	admin := tokenLine.FindString(out)
	if admin == "" || !strings.Contains(out, "Save this token now") {
		t.Fatalf("first start did not print an admin token with a warning to save it:\n%s", out)
	}
	if fi, err := os.Stat(key); err != nil {
		t.Errorf("key file not created: %v", err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}

	get := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, b := testhttp.Do(t, nil, req)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz", ""); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	if code, body := get("/v1/environments", admin); code != 200 {
		t.Errorf("list with the printed token: %d %s", code, body)
	}
	if code, body := get("/v1/network/allowlist", ""); code != 200 || !strings.Contains(body, `"ips": [
    "203.0.113.7",
    "2001:db8::7"
  ]`) {
		t.Errorf("allowlist without a token: %d %s", code, body)
	}
	if code, body := get("/v1/openapi.json", ""); code != 200 || !json.Valid([]byte(body)) {
		t.Errorf("openapi.json: %d", code)
	}

	// A runner token made offline, while the server runs, works at once.
	tc := startTailgate(t, nil, "token", "create", "--db", db, "--org", "default", "--role", "runner", "--name", "ci")
	if code := tc.wait(t, time.Minute); code != 0 {
		t.Fatalf("token create: exit %d\n%s", code, tc.output())
	}
	runner := tokenLine.FindString(tc.output())
	if code, body := get("/v1/environments", runner); runner == "" || code != 200 {
		t.Errorf("list with the offline runner token: %d %s", code, body)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("serve exit %d after SIGTERM:\n%s", code, p.output())
	}
	if !strings.Contains(p.output(), `"msg":"stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", p.output())
	}
	if strings.Count(p.output(), admin) != 1 {
		t.Errorf("the admin token appears %d times in the output (once expected)", strings.Count(p.output(), admin))
	}
	if strings.Contains(p.output()+tc.output(), dbPassword) {
		t.Errorf("the database password is in the output:\n%s", p.output())
	}

	// The second start finds the org and prints no token.
	p2 := startTailgate(t, nil, args...)
	p2.waitLine(t, ctx, "listening on http://")
	if tokenLine.MatchString(p2.output()) || strings.Contains(p2.output(), "First start") {
		t.Errorf("second start printed a token:\n%s", p2.output())
	}
	p2.cmd.Process.Signal(syscall.SIGTERM)
	if code := p2.wait(t, time.Minute); code != 0 {
		t.Errorf("second serve exit %d", code)
	}
}

func TestServeAndTokenRefuseMisuse(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--log-format", "xml", "--db", filepath.Join(dir, "a.db")}, "--log-format must be text or json"},
		{[]string{"gateway", "-f", filepath.Join(dir, "config.yaml"), "--log-format", "xml"}, "--log-format must be text or json"},
		{[]string{"serve", "extra"}, "serve takes no arguments"},
		{[]string{"serve", "--warm-pool", "-1", "--db", filepath.Join(dir, "d.db")}, "--warm-pool must be between 0 (off) and 64, not -1"},
		{[]string{"serve", "--outbound-allow", "127.0.0.0/8,localhost", "--db", filepath.Join(dir, "b.db")}, `--outbound-allow: "localhost" is not a CIDR`},
		{[]string{"serve", "--outbound-deny", "10.0.0.0/33", "--db", filepath.Join(dir, "c.db")}, "--outbound-deny:"},
		{[]string{"token", "create", "--db", filepath.Join(dir, "missing.db"), "--role", "runner", "--name", "ci"}, "missing.db"},
		{[]string{"token", "create", "--role", "owner", "--name", "ci"}, "--role must be admin or runner"},
		{[]string{"token"}, "usage: tailgate token create"},
	} {
		p := startTailgate(t, nil, c.args...)
		if code := p.wait(t, time.Minute); code == 0 {
			t.Errorf("%v: exit 0", c.args)
		}
		if !strings.Contains(p.output(), c.want) {
			t.Errorf("%v: output lacks %q:\n%s", c.args, c.want, p.output())
		}
	}
	p := startTailgate(t, []string{"TAILGATE_WARM_POOL=many"}, "serve", "--db", filepath.Join(dir, "e.db"))
	if code := p.wait(t, time.Minute); code == 0 || !strings.Contains(p.output(), `TAILGATE_WARM_POOL="many" is not a whole number`) {
		t.Errorf("TAILGATE_WARM_POOL=many: exit %d:\n%s", code, p.output())
	}
}

// TestServeConnectsAndVerifiesAgainstTheSandbox runs the real binary
// against a sandbox tailnet in this process (its API and control server
// listen on loopback) and drives it with tailgate env.
func TestServeConnectsAndVerifiesAgainstTheSandbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sb := sandboxtest.Start(t)
	dir := t.TempDir()
	p := startTailgate(t, nil, "serve", "--db", filepath.Join(dir, "t.db"), "--key-file", filepath.Join(dir, "t.key"),
		"--listen", "127.0.0.1:0", "--tailscale-api", sb.APIURL(), "--control-url", sb.ControlURL())
	line := p.waitLine(t, ctx, "listening on http://")
	c := &cliServer{sb: sb, url: line[strings.Index(line, "http://"):], dir: dir}
	t.Setenv("TAILGATE_TOKEN", tokenLine.FindString(p.output()))
	tok := sb.NewAPIToken()

	c.mustEnv(t, "", "create", "staging")
	out := c.mustEnv(t, tok, "connect", "staging", "--target", sandbox.DemoAppName+":443")
	wantAll(t, "connect", out, sandbox.ApprovedSubnet.String())
	out = c.mustEnv(t, "", "verify", "staging")
	wantAll(t, "verify", out, sandbox.DemoAppName+":443", "ok (self-signed)", "reachable")
	c.mustEnv(t, tok, "disconnect", "staging")

	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, p.output())
	}
	if strings.Contains(p.output(), tok) {
		t.Error("the server's output contains the Tailscale API token")
	}
}
