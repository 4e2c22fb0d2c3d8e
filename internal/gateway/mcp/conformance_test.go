package mcp_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/testlog"
)

// The official MCP conformance suite (@modelcontextprotocol/conformance
// 0.1.12) against its reference server (testdata/conformance), directly
// and through the gateway with that server as the one target over
// streamable HTTP, legacy SSE and stdio. .ci/run installs both with
//
//	npm install -g @modelcontextprotocol/conformance@0.1.12 @modelcontextprotocol/sdk@1.25.2 \
//	  express@5.2.1 cors@2.8.5 zod@3.25.76 zod-to-json-schema@3.25.0 tsx@4.20.6
//
// and the test is skipped, saying so, only where that has not been done.

// conformanceServer prepares the reference server in a temporary
// directory whose node_modules is npm's global one; transport is "http"
// (verbatim), "stdio" or "sse" (its createMcpServer behind another
// transport). It returns the file to run with tsx.
func conformanceServer(t *testing.T, dir, transport string) string {
	t.Helper()
	src, err := os.ReadFile("testdata/conformance/everything-server.ts")
	if err != nil {
		t.Fatal(err)
	}
	if transport != "http" {
		i := bytes.Index(src, []byte("function isInitializeRequest("))
		if i < 0 {
			t.Fatal("everything-server.ts: no `function isInitializeRequest(` to cut at")
		}
		main, err := os.ReadFile("testdata/conformance/" + transport + "-main.ts")
		if err != nil {
			t.Fatal(err)
		}
		src = append(src[:i:i], main...)
	}
	file := filepath.Join(dir, "everything-server-"+transport+".ts")
	if err := os.WriteFile(file, src, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func needConformance(t *testing.T) string {
	t.Helper()
	for _, bin := range []string{"conformance", "tsx", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed; .ci/run installs it: npm install -g @modelcontextprotocol/conformance@0.1.12 tsx@4.20.6 (and the reference server's dependencies)", bin)
		}
	}
	out, err := exec.Command("npm", "root", "-g").Output()
	if err != nil {
		t.Skipf("npm root -g: %v", err)
	}
	root := strings.TrimSpace(string(out))
	for _, pkg := range []string{"@modelcontextprotocol/conformance", "@modelcontextprotocol/sdk", "express", "cors", "zod", "zod-to-json-schema"} {
		if _, err := os.Stat(filepath.Join(root, pkg, "package.json")); err != nil {
			t.Skipf("npm package %s is not installed globally; run .ci/run or: npm install -g @modelcontextprotocol/conformance@0.1.12 @modelcontextprotocol/sdk@1.25.2 express@5.2.1 cors@2.8.5 zod@3.25.76 zod-to-json-schema@3.25.0 tsx@4.20.6", pkg)
		}
	}
	return root
}

// startNode runs a reference server on a free port and waits until it
// accepts connections.
func startNode(t *testing.T, dir, file string) int {
	t.Helper()
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "tsx", file)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	var logs testlog.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// tsx runs node as a child: kill the whole group, and do not wait
	// for the child's end of the output pipe.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return port
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("reference server did not listen on %d:\n%s", port, logs.String())
	return 0
}

var scenarioLine = regexp.MustCompile(`(?m)^\s*[✓✗]\s+([a-z0-9-]+): (\d+) passed, (\d+) failed`)

// singleResult is the summary of a one-scenario run (--scenario).
var singleResult = regexp.MustCompile(`(?m)^\s*Passed: (\d+)/\d+, (\d+) failed`)

// runConformance runs every server scenario against url and returns
// "passed/failed" checks per scenario.
func runConformance(t *testing.T, url string) (map[string]string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "conformance", "server", "--url", url).CombinedOutput()
	res := map[string]string{}
	for _, m := range scenarioLine.FindAllStringSubmatch(string(out), -1) {
		res[m[1]] = m[2] + "/" + m[3]
	}
	if len(res) == 0 {
		t.Fatalf("conformance printed no summary for %s:\n%s", url, out)
	}
	// A scenario with timeouts (sampling, progress) can fail on a loaded
	// machine, directly as well as through the gateway: a failed scenario
	// runs again on its own, up to twice, and its best result counts. A
	// scenario the gateway breaks fails every time.
	for name, v := range res {
		for try := 0; try < 2 && !strings.HasSuffix(v, "/0"); try++ {
			again, _ := exec.CommandContext(ctx, "conformance", "server", "--url", url, "--scenario", name).CombinedOutput()
			m := singleResult.FindStringSubmatch(string(again))
			if m == nil {
				t.Logf("%s: scenario %s ran again and printed no result:\n%s", url, name, again)
				break
			}
			t.Logf("%s: scenario %s failed (%s) and ran again: %s/%s", url, name, v, m[1], m[2])
			v = m[1] + "/" + m[2]
		}
		res[name] = v
	}
	return res, string(out)
}

// passed counts scenarios with no failed check.
func passed(res map[string]string) int {
	n := 0
	for _, v := range res {
		if strings.HasSuffix(v, "/0") {
			n++
		}
	}
	return n
}

func TestConformanceSuiteThroughGatewayEqualsDirect(t *testing.T) {
	root := needConformance(t)
	dir := t.TempDir()
	if err := os.Symlink(root, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	direct := startNode(t, dir, conformanceServer(t, dir, "http"))
	want, wantOut := runConformance(t, fmt.Sprintf("http://localhost:%d/mcp", direct))
	t.Logf("direct: %d/%d scenarios passed", passed(want), len(want))
	if passed(want) != len(want) {
		t.Errorf("the reference server fails its own suite directly:\n%s", wantOut)
	}

	sse := startNode(t, dir, conformanceServer(t, dir, "sse"))
	stdio := conformanceServer(t, dir, "stdio")
	targets := map[string]string{
		"streamable-http": fmt.Sprintf(`
          - name: everything
            mcp: {host: "http://127.0.0.1:%d/mcp"}`, direct),
		"sse": fmt.Sprintf(`
          - name: everything
            sse: {host: "http://127.0.0.1:%d/sse"}`, sse),
		"stdio": fmt.Sprintf(`
          - name: everything
            stdio:
              cmd: tsx
              args: [%q]`, stdio),
	}
	for _, kind := range []string{"streamable-http", "sse", "stdio"} {
		t.Run(kind, func(t *testing.T) {
			g := startGateway(t, federationConfig("conditional", targets[kind]))
			got, out := runConformance(t, g.url)
			t.Logf("through the gateway (%s target): %d/%d scenarios passed", kind, passed(got), len(got))
			var diff []string
			for name, w := range want {
				if got[name] != w {
					diff = append(diff, fmt.Sprintf("%s: direct %s, through the gateway %q", name, w, got[name]))
				}
			}
			for name, v := range got {
				if _, ok := want[name]; !ok {
					diff = append(diff, fmt.Sprintf("%s: only through the gateway (%s)", name, v))
				}
			}
			sort.Strings(diff)
			if len(diff) > 0 {
				t.Errorf("checks passed/failed differ from direct:\n  %s\n%s", strings.Join(diff, "\n  "), out)
				// The first difference in detail.
				name := strings.SplitN(diff[0], ":", 2)[0]
				v, _ := exec.Command("conformance", "server", "--url", g.url, "--scenario", name, "--verbose").CombinedOutput()
				t.Logf("%s in detail:\n%s", name, v)
			}
		})
	}
}
