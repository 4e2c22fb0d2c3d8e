package main

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/browser"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

// TestDemoServesPrivateAppAndStopsOnSIGTERM runs `tailgate demo` as a user
// would, joins its sandbox tailnet from this process, fetches the private
// app through the tailnet, and stops the demo with SIGTERM.
func TestDemoServesPrivateAppAndStopsOnSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := startTailgate(t, nil, "demo")
	line := p.waitLine(t, ctx, "control URL:")
	controlURL := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "control URL:"))
	p.waitLine(t, ctx, "press Ctrl-C to stop")
	out := p.output()
	for _, want := range []string{
		"Granted CIDRs", sandbox.ApprovedSubnet.String(), // connect
		"route not approved",     // verify: the unapproved route's target
		sandbox.DemoAppText,      // run: the private app through the proxy
		"refused (not_a_target)", // run: a public host
	} {
		if !strings.Contains(out, want) {
			t.Errorf("walk-through lacks %q:\n%s", want, out)
		}
	}

	// The lines the demo prints for another terminal work as printed:
	// its API starts runs and flows like tailgate serve's.
	export := strings.Fields(strings.TrimPrefix(strings.TrimSpace(lineWith(out, "export TAILGATE_SERVER=")), "export "))
	_, runArgs, ok := strings.Cut(lineWith(out, " run --env "+demoEnv+" -- "), "tailgate run ")
	if !ok || len(export) != 2 {
		t.Fatalf("no copyable export and run lines:\n%s", out)
	}
	rp := startTailgate(t, export, append([]string{"run"}, strings.Fields(runArgs)...)...)
	if code := rp.wait(t, 2*time.Minute); code != 0 || !strings.Contains(rp.output(), sandbox.DemoAppText) {
		t.Errorf("the demo's run line (%s) exited %d:\n%s", runArgs, code, rp.output())
	}
	if _, err := os.Stat(browser.DefaultChromiumPath); err == nil {
		_, flowArgs, _ := strings.Cut(lineWith(out, " flow run "), "tailgate flow run ")
		fp := startTailgate(t, export, append([]string{"flow", "run", "--out", t.TempDir()}, strings.Fields(flowArgs)...)...)
		if code := fp.wait(t, 2*time.Minute); code != 0 || !strings.Contains(fp.output(), `Flow "demo smoke" passed`) {
			t.Errorf("the demo's flow line (%s) exited %d:\n%s", flowArgs, code, fp.output())
		}
	}

	// A node of our own, in this process, on the demo's tailnet.
	n, err := tailnet.Join(ctx, tailnet.JoinOptions{ControlURL: controlURL, Hostname: "demo-test", AcceptRoutes: true})
	if err != nil {
		t.Fatalf("join the demo's tailnet at %q: %v", controlURL, err)
	}
	defer n.Close()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, _ := net.SplitHostPort(addr)
		ips, err := n.LookupNetIP(ctx, host)
		if err != nil {
			return nil, err
		}
		p, _ := strconv.Atoi(port)
		return n.DialTCP(ctx, netip.AddrPortFrom(ips[0], uint16(p)))
	}}}
	for _, u := range []string{"http://" + sandbox.DemoAppIP.String() + "/", "http://" + sandbox.DemoAppName + "/"} {
		resp, b := testhttp.Get(t, c, u)
		if resp.StatusCode != 200 || !strings.Contains(string(b), sandbox.DemoAppText) {
			t.Errorf("GET %s: %s %.100q", u, resp.Status, b)
		}
	}
	c.CloseIdleConnections()

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("demo exited %d after SIGTERM:\n%s", code, p.output())
	}
	if !strings.Contains(p.output(), "Stopped.") {
		t.Errorf("demo did not report a clean stop:\n%s", p.output())
	}
}

// lineWith returns the first line of out containing substr, or "".
func lineWith(out, substr string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}
