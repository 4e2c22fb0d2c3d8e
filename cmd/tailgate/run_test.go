package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/testhttp"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

// runServer is the tailgate serve binary over a sandbox tailnet, with a
// 2 s run lease so an abandoned run is swept within seconds, heap return
// at its most eager (every check, each 5 s, gives freed memory back: runs
// must work while it does), an environment "web" connected to the private
// demo app (by its internal name and by its subnet IP) and an environment
// "idle" never connected.
type runServer struct {
	sb     *sandbox.Sandbox
	url    string
	db     string
	admin  string
	runner string
}

func newRunServer(t *testing.T) *runServer {
	t.Helper()
	sb := sandboxtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	rs := &runServer{sb: sb, db: filepath.Join(dir, "t.db")}
	p := startTailgate(t, nil, "serve", "--db", rs.db, "--key-file", filepath.Join(dir, "t.key"),
		"--listen", "127.0.0.1:0", "--tailscale-api", sb.APIURL(), "--control-url", sb.ControlURL(),
		"--run-lease", "2s", "--log-format", "json", "--heap-return-mib", "1")
	line := p.waitLine(t, ctx, "listening on http://")
	rs.url = line[strings.Index(line, "http://"):]
	rs.admin = tokenLine.FindString(p.output())
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.wait(t, time.Minute)
	})

	var tok api.CreatedToken
	rs.call(t, "POST", "/v1/tokens", rs.admin, api.CreateTokenRequest{Name: "ci", Role: "runner"}, 201, &tok)
	rs.runner = tok.Token
	c := &cliServer{sb: sb, url: rs.url, dir: dir}
	t.Setenv("TAILGATE_TOKEN", rs.admin)
	c.mustEnv(t, "", "create", "web")
	c.mustEnv(t, "", "create", "idle")
	c.mustEnv(t, sb.NewAPIToken(), "connect", "web", "--target", sandbox.DemoAppName+":80", "--target", sandbox.DemoAppIP.String()+":80")
	return rs
}

// call sends one API request and decodes the answer, failing the test on
// an unexpected status.
func (rs *runServer) call(t *testing.T, method, path, token string, body any, want int, out any) {
	t.Helper()
	a := runAPICall(t, rs.url, method, path, token, body)
	if a.status != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, a.status, want, a.body)
	}
	if out != nil {
		if err := json.Unmarshal(a.body, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// runAPICall is a bare API request for the run tests.
type runAnswer struct {
	status int
	body   []byte
}

func runAPICall(t *testing.T, base, method, path, token string, body any) runAnswer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, b := testhttp.Do(t, nil, req)
	return runAnswer{resp.StatusCode, b}
}

// tailgate starts a tailgate subcommand as a runner of the server.
func (rs *runServer) tailgate(t *testing.T, extraEnv []string, args ...string) *subprocess {
	t.Helper()
	env := append([]string{"TAILGATE_TOKEN=" + rs.runner, "TAILGATE_SERVER=" + rs.url}, extraEnv...)
	return startTailgate(t, env, args...)
}

// finishRun waits for a tailgate subcommand and returns its status and output.
func finishRun(t *testing.T, p *subprocess) (int, string) {
	t.Helper()
	code := p.wait(t, 2*time.Minute)
	return code, p.output()
}

var readyLine = regexp.MustCompile(`run (run_[a-z2-7]+) of (\S+) ready: proxy (http://127\.0\.0\.1:\d+) \(joined in \d+ ms, path warmed in \d+ ms\)`)

// TestRunsThroughTheServeBinary drives tailgate run and tailgate flow run,
// as subprocesses, against tailgate serve over one sandbox tailnet.
func TestRunsThroughTheServeBinary(t *testing.T) {
	rs := newRunServer(t)

	t.Run("curl reaches the private app by its internal name", func(t *testing.T) {
		code, out := finishRun(t, rs.tailgate(t, nil, "run", "--env", "web", "--", "curl", "-s", "http://"+sandbox.DemoAppName+"/"))
		if code != 0 || !strings.Contains(out, sandbox.DemoAppText) {
			t.Fatalf("exit %d, want 0 and the private page:\n%s", code, out)
		}
		if !readyLine.MatchString(out) {
			t.Errorf("no line naming the run, its proxy and its warm time:\n%s", out)
		}
	})

	t.Run("a public host is refused and curl's status comes back", func(t *testing.T) {
		code, out := finishRun(t, rs.tailgate(t, nil, "run", "--env", "web", "--", "curl", "-sf", "http://example.com/"))
		if code != 22 { // curl -f: HTTP error (the proxy's 403)
			t.Fatalf("exit %d, want curl's 22:\n%s", code, out)
		}
		if !strings.Contains(out, "refused example.com:80") || !strings.Contains(out, "not_a_target") {
			t.Errorf("the refusal is not explained:\n%s", out)
		}
	})

	t.Run("the command gets the proxy, no NO_PROXY and no tailgate token", func(t *testing.T) {
		script := `echo "vars:$HTTP_PROXY|$https_proxy|$ALL_PROXY|$NO_PROXY|$no_proxy|$TAILGATE_TOKEN|$TAILGATE_RUN_ID"; exit 7`
		code, out := finishRun(t, rs.tailgate(t, []string{"NO_PROXY=" + sandbox.DemoAppName, "no_proxy=*", "HTTPS_PROXY=http://192.0.2.99:3128"},
			"run", "--env", "web", "--", "sh", "-c", script))
		if code != 7 {
			t.Errorf("exit %d, want the command's 7:\n%s", code, out)
		}
		m := readyLine.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no ready line:\n%s", out)
		}
		want := "vars:" + m[3] + "|" + m[3] + "|" + m[3] + "|||" + "|" + m[1]
		if !strings.Contains(out, want) {
			t.Errorf("command's environment: want %q in\n%s", want, out)
		}
		if strings.Contains(out, rs.runner) {
			t.Error("the tailgate token reached the command")
		}
	})

	t.Run("in the jail only the proxy is reachable and no name resolves", func(t *testing.T) {
		if runtime.GOOS != "linux" || os.Geteuid() != 0 {
			t.Skip("skipping: the jail is tested as root on Linux (CI); elsewhere auto may run without it")
		}
		// getent asks the host's resolver; curl --socks5 resolves the name
		// itself before asking the proxy; --socks5-hostname and -x hand the
		// name to the proxy, which resolves it through the tailnet.
		app := "http://" + sandbox.DemoAppName + "/"
		script := `P=${TAILGATE_PROXY_URL#http://}
getent hosts example.com; echo "getent=$?"
getent hosts ` + sandbox.DemoAppName + `; echo "getent-app=$?"
curl -sS --max-time 5 --socks5 "$P" ` + app + ` 2>&1 >/dev/null | sed 's/^/socks5-error: /'; curl -s --max-time 5 --socks5 "$P" ` + app + ` >/dev/null; echo "socks5=$?"
curl -s --max-time 5 --socks5-hostname "$P" ` + app + `; echo "socks5h=$?"
curl -s --max-time 5 -x "$TAILGATE_PROXY_URL" ` + app + ` >/dev/null; echo "proxy=$?"
curl -s --max-time 5 --noproxy '*' http://192.0.2.1/ >/dev/null; echo "direct=$?"`
		code, out := finishRun(t, rs.tailgate(t, nil, "run", "--env", "web", "--jail", "required", "--", "sh", "-c", script))
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		for _, want := range []string{
			"jail on (own network namespace",
			"getent=2", "getent-app=2", // not found: no resolver at all
			// curl --socks5 resolves the name itself, finds no resolver
			// and gives up (6, or 97 in newer curl).
			"socks5-error: curl: (", "Could not resolve host",
			"socks5h=0", sandbox.DemoAppText,
			"proxy=0",
			"direct=7", // curl: could not connect: no route
		} {
			if !strings.Contains(out, want) {
				t.Errorf("jailed command output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "socks5=0") {
			t.Errorf("curl --socks5 resolved the name outside the tailnet:\n%s", out)
		}
		// The locally resolving attempt never reached the proxy: nothing
		// was refused, because nothing was asked.
		if strings.Contains(out, "tailgate: refused") {
			t.Errorf("the proxy saw a request it refused:\n%s", out)
		}
	})

	t.Run("--jail=off runs the command in the host's namespace and says so", func(t *testing.T) {
		code, out := finishRun(t, rs.tailgate(t, nil, "run", "--env", "web", "--jail", "off", "--", "curl", "-s", "http://"+sandbox.DemoAppName+"/"))
		if code != 0 || !strings.Contains(out, "jail off (--jail=off)") || !strings.Contains(out, sandbox.DemoAppText) {
			t.Errorf("exit %d:\n%s", code, out)
		}
		code, out = finishRun(t, rs.tailgate(t, nil, "run", "--env", "web", "--jail", "strict", "--", "true"))
		if code != 2 || !strings.Contains(out, "want auto, required or off") {
			t.Errorf("--jail strict: exit %d:\n%s", code, out)
		}
	})

	t.Run("flow loads the private app by name and by subnet IP", func(t *testing.T) {
		testFlowThroughARun(t, rs)
	})

	t.Run("SIGKILL of tailgate run: the sweeper ends the run and its node leaves", func(t *testing.T) {
		p := rs.tailgate(t, nil, "run", "--env", "web", "--", "sh", "-c", `echo "command pid $$"; exec sleep 60`)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		m := readyLine.FindStringSubmatch(p.waitLine(t, ctx, "ready: proxy"))
		pid, _ := strconv.Atoi(strings.TrimPrefix(p.waitLine(t, ctx, "command pid "), "command pid "))
		var info api.Run
		rs.call(t, "GET", "/v1/runs/"+m[1], rs.runner, nil, 200, &info)
		if info.State != "ready" || info.Node == "" {
			t.Fatalf("run before the kill: %+v", info)
		}
		cp := tsapi.NewWithAPIToken(rs.sb.APIURL(), rs.sb.NewAPIToken())
		if !inTailnet(t, cp, info.Node) {
			t.Fatalf("run's node %s is not in the tailnet", info.Node)
		}

		p.cmd.Process.Kill() // SIGKILL: no heartbeat, no end, nothing
		// The orphaned command holds the output pipe open; it goes too.
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		p.wait(t, time.Minute)

		deadline := time.Now().Add(45 * time.Second)
		for {
			var got api.Run
			rs.call(t, "GET", "/v1/runs/"+m[1], rs.runner, nil, 200, &got)
			if got.State == "ended" && !inTailnet(t, cp, info.Node) {
				if !strings.Contains(got.EndReason, "lease expired") {
					t.Errorf("end reason %q, want the lapsed lease", got.EndReason)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("45 s after SIGKILL: run %s, node in tailnet: %v", got.State, inTailnet(t, cp, info.Node))
			}
			time.Sleep(250 * time.Millisecond)
		}
	})

	t.Run("SIGTERM is passed on to the command, then the run ends", func(t *testing.T) {
		// The background sleep must not hold the test's output pipe: if it
		// outlived the shell, the pipe would never reach EOF.
		script := `trap 'kill $! 2>/dev/null; echo "command got TERM"; exit 3' TERM; sleep 60 >/dev/null 2>&1 & echo "command pid $$"; wait`
		p := rs.tailgate(t, nil, "run", "--env", "web", "--", "sh", "-c", script)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		m := readyLine.FindStringSubmatch(p.waitLine(t, ctx, "ready: proxy"))
		p.waitLine(t, ctx, "command pid ")
		p.cmd.Process.Signal(syscall.SIGTERM)
		code := p.wait(t, time.Minute)
		if code != 3 || !strings.Contains(p.output(), "command got TERM") {
			t.Errorf("exit %d, want the command's 3 after it got SIGTERM:\n%s", code, p.output())
		}
		var got api.Run
		rs.call(t, "GET", "/v1/runs/"+m[1], rs.runner, nil, 200, &got)
		if got.State != "ended" || got.EndReason != api.EndReasonClient {
			t.Errorf("after SIGTERM the run is %s (%q), want ended by the client", got.State, got.EndReason)
		}
	})

	t.Run("bad input is a clear error and starts nothing", func(t *testing.T) {
		for _, tc := range []struct {
			what string
			env  []string
			args []string
			code int
			want string
		}{
			{"unknown environment", nil, []string{"run", "--env", "nope", "--", "true"}, 1, `environment "nope" not found (404 not_found)`},
			{"disconnected environment", nil, []string{"run", "--env", "idle", "--", "true"}, 1, `"idle" has no private network connected`},
			{"unknown token", []string{"TAILGATE_TOKEN=tg_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, []string{"run", "--env", "web", "--", "true"}, 1, "401 unauthenticated"},
			{"no --env", nil, []string{"run", "--", "true"}, 2, "--env NAME is required"},
			{"no command", nil, []string{"run", "--env", "web"}, 2, "give the command to run after --"},
			{"command not found", nil, []string{"run", "--env", "web", "--", "/nonexistent/tool"}, 127, "/nonexistent/tool"},
			{"flow without --env", nil, []string{"flow", "run", "x.yaml"}, 2, "--env NAME is required"},
			{"flow file missing", nil, []string{"flow", "run", "/nonexistent/flow.yaml", "--env", "web"}, 1, "/nonexistent/flow.yaml"},
		} {
			code, out := finishRun(t, rs.tailgate(t, tc.env, tc.args...))
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("%s: exit %d, want %d with %q:\n%s", tc.what, code, tc.code, tc.want, out)
			}
		}
	})

	t.Run("a run past its lifetime ends and the command is told", func(t *testing.T) {
		code, out := finishRun(t, rs.tailgate(t, nil, "run", "--env", "web", "--lifetime", "1s", "--", "sleep", "4"))
		if code != 0 {
			t.Errorf("exit %d, want sleep's 0:\n%s", code, out)
		}
		if !strings.Contains(out, "has ended (maximum lifetime reached)") || !strings.Contains(out, "proxy is closed") {
			t.Errorf("the expiry is not said:\n%s", out)
		}
	})

	t.Run("another org's run is not found", func(t *testing.T) {
		ctx := context.Background()
		st, err := store.Open(ctx, rs.db)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		org, err := st.CreateOrg(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		other, _, err := st.CreateAPIToken(ctx, org.ID, "ci", store.RoleRunner)
		if err != nil {
			t.Fatal(err)
		}
		var r api.Run
		rs.call(t, "POST", "/v1/environments/web/runs", rs.runner, nil, 201, &r)
		defer rs.call(t, "DELETE", "/v1/runs/"+r.ID, rs.runner, nil, 200, nil)
		for _, m := range [][2]string{{"GET", "/v1/runs/" + r.ID}, {"POST", "/v1/runs/" + r.ID + "/heartbeat"}, {"DELETE", "/v1/runs/" + r.ID}} {
			if a := runAPICall(t, rs.url, m[0], m[1], other, nil); a.status != 404 {
				t.Errorf("%s %s by another org: %d %s", m[0], m[1], a.status, a.body)
			}
		}
		if a := runAPICall(t, rs.url, "POST", "/v1/environments/web/runs", other, nil); a.status != 404 {
			t.Errorf("another org starting a run of web: %d %s", a.status, a.body)
		}
		rs.call(t, "POST", "/v1/runs/"+r.ID+"/heartbeat", rs.runner, nil, 200, nil)
	})
}

func inTailnet(t *testing.T, cp *tsapi.Client, hostname string) bool {
	t.Helper()
	devs, err := cp.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(devs, func(d tsapi.Device) bool { return d.Hostname == hostname })
}

func TestServeRefusesBadRunFlags(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--run-lease", "0s"}, nil, "--run-lease must be positive"},
		{[]string{"--run-max-lifetime", "-1h"}, nil, "must be positive"},
		{[]string{"--run-lease", "soon"}, nil, "invalid value"},
		{nil, []string{"TAILGATE_RUN_LEASE=soon"}, "TAILGATE_RUN_LEASE"},
		{[]string{"--heap-return-mib", "-1"}, nil, "--heap-return-mib must be 0 (off) or positive, not -1"},
		{nil, []string{"TAILGATE_HEAP_RETURN_MIB=lots"}, "TAILGATE_HEAP_RETURN_MIB"},
	} {
		args := append([]string{"serve", "--db", filepath.Join(dir, "a.db"), "--key-file", filepath.Join(dir, "a.key"), "--listen", "127.0.0.1:0"}, c.args...)
		p := startTailgate(t, c.env, args...)
		if code := p.wait(t, time.Minute); code != 2 {
			t.Errorf("%v %v: exit %d, want 2", c.env, c.args, code)
		}
		if !strings.Contains(p.output(), c.want) {
			t.Errorf("%v %v: output lacks %q:\n%s", c.env, c.args, c.want, p.output())
		}
	}
}
