package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

// tailnetClient is an HTTP client whose connections leave from node.
func tailnetClient(node *tailnet.Node) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, err
			}
			return node.DialTCP(ctx, ap)
		},
	}}
}

// refusedAtConnect reports whether the server closed a connection from
// dial without sending any HTTP response.
func refusedAtConnect(t *testing.T, dial func() (net.Conn, error)) bool {
	t.Helper()
	c, err := dial()
	if err != nil {
		return true
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 64))
	return n == 0 && err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// tailnetSandbox is a sandbox tailnet of the test's own for a gateway to
// join with the auth key it finds in TAILGATE_TEST_AUTHKEY; the test is
// skipped under -short.
func tailnetSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an in-process tailnet")
	}
	t.Setenv("TAILGATE_TEST_AUTHKEY", "tskey-auth-test")
	return sandboxtest.Start(t)
}

func TestTailnetBindWithSeedRuleAndTagRule(t *testing.T) {
	sb := tailnetSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	be := echoBackend(t)
	const tailnetPort = 3000
	hostPort := freePort(t)
	cfg := func(rule string) string {
		return fmt.Sprintf(`
tailnet:
  hostname: gateway
  controlURL: %s
  authKey: {env: TAILGATE_TEST_AUTHKEY}
  ephemeral: true
  tags: [tag:gateway]
frontendPolicies:
  networkAuthorization:
    rules:
    - allow: '%s'
binds:
- port: %d
  tailnet: true
  listeners:
  - routes:
    - name: app
      policies:
        authorization:
          rules: ['"tag:ci" in source.tailscale.tags || source.tailscale.user != ""']
      backends: [{host: %q}]
- port: %d
  listeners:
  - routes:
    - backends: [{host: %q}]
`, sb.ControlURL(), rule, tailnetPort, hostOf(be), hostPort, hostOf(be))
	}
	g := startGateway(t, cfg(`cidr("100.64.0.0/10").containsIP(source.address)`), hostPort)
	gwIP, ok := g.TailnetIPv4()
	if !ok {
		t.Fatal("gateway did not join the tailnet")
	}
	if !strings.Contains(g.ops.String(), `msg="started bind" bind=bind/3000 network=tailnet`) {
		t.Errorf("ops log:\n%s", g.ops.String())
	}

	tagged, err := sb.NewNode(ctx, sandbox.NodeOptions{Hostname: "ci-runner", Tags: []string{"tag:ci"}})
	if err != nil {
		t.Fatal(err)
	}
	untagged, err := sb.NewNode(ctx, sandbox.NodeOptions{Hostname: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s:%d/hello", gwIP, tailnetPort)

	// The seed's rule: a tailnet client is served ...
	resp, b := testhttp.Get(t, tailnetClient(tagged), url)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "GET /hello") {
		t.Fatalf("tailnet client: %d %s", resp.StatusCode, b)
	}
	line := lineWith(g.access.WaitFor(t, "path=/hello"), "path=/hello")
	// (testcontrol gives tagged nodes a user too; Tailscale says "tagged-devices".)
	for _, want := range []string{"tailscale.node=ci-runner", "tailscale.tags=tag:ci", "tailscale.user="} {
		if !strings.Contains(line, want) {
			t.Errorf("access log lacks %s: %s", want, line)
		}
	}
	// ... and a loopback client is refused at connect.
	if !refusedAtConnect(t, func() (net.Conn, error) { return net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hostPort)) }) {
		t.Error("loopback client was not refused at connect")
	}

	// The same rule written with tags: tagged node passes, untagged refused.
	writeFile(t, g.path, []byte(cfg(`"tag:ci" in source.tailscale.tags`)))
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if refusedAtConnect(t, func() (net.Conn, error) {
		return tagged.DialTCP(ctx, netip.AddrPortFrom(netip.MustParseAddr(gwIP), tailnetPort))
	}) {
		t.Error("tagged node refused by the tag rule")
	}
	if !refusedAtConnect(t, func() (net.Conn, error) {
		return untagged.DialTCP(ctx, netip.AddrPortFrom(netip.MustParseAddr(gwIP), tailnetPort))
	}) {
		t.Error("untagged node admitted by the tag rule")
	}
	log := g.access.WaitFor(t, "tailscale.node=laptop")
	if line := lineWith(log, "tailscale.node=laptop"); !strings.Contains(line, "connection denied") {
		t.Errorf("refusal log: %s", line)
	}
	// Loopback has no tailnet identity: the tag rule refuses it too.
	if !refusedAtConnect(t, func() (net.Conn, error) { return net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hostPort)) }) {
		t.Error("loopback client admitted by the tag rule")
	}
}
