package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

// assignment finds NAME=value among a command's output lines.
func assignment(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s=... line in:\n%s", name, out)
	}
	return m[1]
}

// TestSandboxCommandServesAnotherProcess runs tailgate sandbox on
// 127.0.0.2 (an address other than the usual one, as --listen binds for
// other hosts), evaluates what it prints in a shell that then starts
// tailgate serve, connects an environment with the printed Tailscale API
// token through the CLI, and runs curl to the private app through it.
func TestSandboxCommandServesAnotherProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sbp := startTailgate(t, nil, "sandbox", "--listen", "127.0.0.2")
	sbp.waitLine(t, ctx, "# ready")
	env := sbp.output()
	control, apiToken := assignment(t, env, "TAILGATE_CONTROL_URL"), assignment(t, env, "TAILSCALE_API_TOKEN")
	if !strings.HasPrefix(control, "http://127.0.0.2:") || !strings.HasPrefix(assignment(t, env, "TAILGATE_TAILSCALE_API"), "http://127.0.0.2:") {
		t.Errorf("the URLs are not on --listen's address:\n%s", env)
	}
	for _, l := range strings.Split(env, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") && !regexp.MustCompile(`^[A-Z_]+=\S+$`).MatchString(l) {
			t.Errorf("line %q is neither an assignment nor a comment", l)
		}
	}

	// serve takes its settings from the environment the shell made of
	// the sandbox's output, and nothing else.
	dir := t.TempDir()
	script := `set -a; eval "$SANDBOX_ENV"; set +a; exec "$0" "$@"`
	serve := startProcess(t, exec.Command("sh", "-c", script, os.Args[0], "serve", "--db", filepath.Join(dir, "t.db"),
		"--key-file", filepath.Join(dir, "t.key"), "--listen", "127.0.0.1:0"), []string{"SANDBOX_ENV=" + env})
	line := serve.waitLine(t, ctx, "listening on http://")
	server := line[strings.Index(line, "http://"):]
	admin := tokenLine.FindString(serve.output())
	if !strings.Contains(serve.output(), "control_url="+control) {
		t.Errorf("serve did not take the control URL from TAILGATE_CONTROL_URL:\n%s", serve.output())
	}

	c := &cliServer{url: server, dir: dir}
	t.Setenv("TAILGATE_TOKEN", admin)
	c.mustEnv(t, "", "create", "staging")
	out := c.mustEnv(t, apiToken+"\n", "connect", "staging", "--target", sandbox.DemoAppName+":80")
	wantAll(t, "connect", out, "Connected staging", sandbox.ApprovedSubnet.String())

	run := startTailgate(t, []string{"TAILGATE_TOKEN=" + admin, "TAILGATE_SERVER=" + server},
		"run", "--env", "staging", "--", "curl", "-s", "http://"+sandbox.DemoAppName+"/")
	code, runOut := finishRun(t, run)
	if code != 0 || !strings.Contains(runOut, sandbox.DemoAppText) {
		t.Fatalf("tailgate run -- curl: exit %d, want 0 and the private page:\n%s", code, runOut)
	}

	serve.cmd.Process.Signal(syscall.SIGTERM)
	if code := serve.wait(t, time.Minute); code != 0 {
		t.Errorf("serve exit %d:\n%s", code, serve.output())
	}
	sbp.cmd.Process.Signal(syscall.SIGINT)
	if code := sbp.wait(t, time.Minute); code != 0 {
		t.Errorf("sandbox exit %d after SIGINT, want 0:\n%s", code, sbp.output())
	}
	if strings.Contains(serve.output(), apiToken) {
		t.Error("serve's output contains the Tailscale API token")
	}
}

func TestSandboxCommandRefusesAnAddressItCannotAdvertise(t *testing.T) {
	for _, c := range []struct{ listen, want string }{
		{"0.0.0.0", "other than 0.0.0.0"},
		{"127.0.0.1:9000", "without a port"},
		{"sandbox.example", "not an IP address"},
		{"::1", "IPv4"},
	} {
		p := startTailgate(t, nil, "sandbox", "--listen", c.listen)
		if code := p.wait(t, time.Minute); code != 2 {
			t.Errorf("--listen %s: exit %d, want 2", c.listen, code)
		}
		if !strings.Contains(p.output(), c.want) {
			t.Errorf("--listen %s: output lacks %q:\n%s", c.listen, c.want, p.output())
		}
	}
}

// TestServeSandboxRunsEveryVerbOffline starts tailgate serve --sandbox
// and drives it with nothing but what it printed.
func TestServeSandboxRunsEveryVerbOffline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p := startTailgate(t, nil, "serve", "--sandbox", "--listen", "127.0.0.1:0")
	p.waitLine(t, ctx, "listening on http://")
	out := p.output()
	server, admin, apiToken := assignment(t, out, "TAILGATE_SERVER"), assignment(t, out, "TAILGATE_TOKEN"), assignment(t, out, "TAILSCALE_API_TOKEN")
	assignment(t, out, "TAILGATE_CONTROL_URL")
	assignment(t, out, "TAILGATE_TAILSCALE_API")
	if strings.Count(out, admin) != 1 {
		t.Errorf("the admin token appears %d times (once expected):\n%s", strings.Count(out, admin), out)
	}

	c := &cliServer{url: server, dir: t.TempDir()}
	t.Setenv("TAILGATE_TOKEN", admin)
	c.mustEnv(t, "", "create", "staging")
	c.mustEnv(t, apiToken+"\n", "connect", "staging", "--target", sandbox.DemoAppName+":80")
	wantAll(t, "verify", c.mustEnv(t, "", "verify", "staging"), "reachable")
	wantAll(t, "status", c.mustEnv(t, "", "status", "staging"), "verified")
	run := startTailgate(t, []string{"TAILGATE_TOKEN=" + admin, "TAILGATE_SERVER=" + server},
		"run", "--env", "staging", "--", "curl", "-s", "http://"+sandbox.DemoAppName+"/")
	code, runOut := finishRun(t, run)
	t.Logf("run output:\n%s", runOut)
	if code != 0 || !strings.Contains(runOut, sandbox.DemoAppText) {
		t.Fatalf("tailgate run -- curl: exit %d, want 0 and the private page:\n%s", code, out)
	}
	c.mustEnv(t, apiToken+"\n", "disconnect", "staging")

	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("serve --sandbox exit %d:\n%s", code, p.output())
	}
}

func TestServeSandboxRefusesAnotherControl(t *testing.T) {
	p := startTailgate(t, nil, "serve", "--sandbox", "--control-url", "https://controlplane.tailscale.com")
	if code := p.wait(t, time.Minute); code != 2 || !strings.Contains(p.output(), "--sandbox brings its own") {
		t.Errorf("exit %d, want 2 and why:\n%s", code, p.output())
	}
}
