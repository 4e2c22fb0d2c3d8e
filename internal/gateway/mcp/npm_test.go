package mcp_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

// These tests run real npm packages. .ci/run installs them with
//
//	npm install -g @modelcontextprotocol/server-everything @modelcontextprotocol/inspector-cli
//
// and they are skipped, saying so, only where that has not been done.

func needNPM(t *testing.T, pkg string) {
	t.Helper()
	if _, err := exec.LookPath("npx"); err != nil {
		t.Skip("npx is not installed; .ci/run installs node and " + pkg)
	}
	if err := exec.Command("npm", "ls", "-g", pkg).Run(); err != nil {
		t.Skipf("%s is not installed globally; run: npm install -g %s", pkg, pkg)
	}
}

func seedConfig(t *testing.T) []byte {
	b, err := os.ReadFile("testdata/seed-003-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The seed's config, byte for byte, starts the gateway on port 3000; its
// networkAuthorization admits only 100.64.0.0/10, so a loopback client is
// refused at connect (the seed's own check from off the tailnet).
func TestSeedConfigVerbatimStartsAndRefusesOffTailnet(t *testing.T) {
	needNPM(t, "@modelcontextprotocol/server-everything")
	g := startGatewayFile(t, seedConfig(t), 3000)
	if !strings.Contains(g.ops.String(), `msg="started bind" bind=bind/3000 network=host`) {
		t.Errorf("ops log lacks the start line:\n%s", g.ops.String())
	}
	c, err := net.Dial("tcp", "127.0.0.1:3000")
	if err != nil {
		return // refused outright is fine too
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _ := c.Read(make([]byte, 64)); n != 0 {
		t.Error("a loopback client got an answer through the seed's 100.64.0.0/10 rule")
	}
}

// The seed's config on the sandbox tailnet: the same bytes plus
// `tailnet: true` on its bind and a tailnet: block. A Go SDK client on
// a tailnet node lists and calls server-everything's tools through /mcp.
func TestSeedConfigOverTailnetListsAndCallsEverything(t *testing.T) {
	needNPM(t, "@modelcontextprotocol/server-everything")
	if testing.Short() {
		t.Skip("starts an in-process tailnet")
	}
	sb := sandboxtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t.Setenv("TAILGATE_TEST_AUTHKEY", "tskey-auth-test")
	cfg := bytes.Replace(seedConfig(t), []byte("- port: 3000\n"), []byte("- port: 3000\n  tailnet: true\n"), 1)
	cfg = append(cfg, fmt.Sprintf(`tailnet:
  hostname: gateway
  controlURL: %s
  authKey: {env: TAILGATE_TEST_AUTHKEY}
  ephemeral: true
`, sb.ControlURL())...)
	g := startGatewayFile(t, cfg, 3000)
	gwIP, ok := g.TailnetIPv4()
	if !ok {
		t.Fatal("gateway did not join the tailnet")
	}
	node, err := sb.NewNode(ctx, sandbox.NodeOptions{Hostname: "c", Tags: []string{"tag:ci"}})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, err
		}
		return node.DialTCP(ctx, ap)
	}}}
	cs := connect(t, fmt.Sprintf("http://%s:3000/mcp", gwIP), hc)
	names := toolNames(t, cs)
	if !contains(names, "echo") {
		t.Fatalf("server-everything's tools through the gateway: %v", names)
	}
	if got := callText(t, cs, "echo", map[string]any{"message": "over the tailnet"}); !strings.Contains(got, "over the tailnet") {
		t.Errorf("echo: %q", got)
	}
	// The line follows the answer (the client does not wait for its write).
	log := g.access.WaitFor(t, "msg=mcp method=tools/call target=everything tool=echo")
	if !strings.Contains(log, "tailscale.node=c") {
		t.Errorf("access log:\n%s", log)
	}
}

// The MCP Inspector CLI, a client nobody here wrote, lists and calls
// server-everything's tools through the gateway.
func TestInspectorCLIListsAndCallsThroughGateway(t *testing.T) {
	needNPM(t, "@modelcontextprotocol/server-everything")
	needNPM(t, "@modelcontextprotocol/inspector-cli")
	root, err := exec.Command("npm", "root", "-g").Output()
	if err != nil {
		t.Skip("npm root -g failed")
	}
	cli := filepath.Join(strings.TrimSpace(string(root)), "@modelcontextprotocol/inspector-cli/build/index.js")
	g := startGateway(t, `
binds:
- port: %PORT%
  listeners:
  - routes:
    - name: mcp
      backends:
      - mcp:
          targets:
          - name: everything
            stdio: {cmd: npx, args: ["@modelcontextprotocol/server-everything"]}
`)
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "node", append([]string{cli, g.url, "--transport", "http"}, args...)...)
		// The CLI finds its package.json relative to the working
		// directory (fs.existsSync("../package.json")).
		cmd.Dir = filepath.Dir(cli)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("inspector %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("--method", "tools/list"); !strings.Contains(out, `"name": "echo"`) {
		t.Errorf("inspector tools/list:\n%s", out)
	}
	if out := run("--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=from-inspector"); !strings.Contains(out, "from-inspector") {
		t.Errorf("inspector tools/call:\n%s", out)
	}
}
