package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

func init() {
	register(command{
		name:    "demo",
		summary: "run tailgate against an embedded sandbox tailnet with a private demo app",
		run:     runDemo,
	})
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	once := fs.Bool("once", false, "exit after the walk-through instead of serving until interrupted")
	verbose := fs.Bool("v", false, "print the sandbox's tailnet logs")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"demo takes no arguments"}
	}
	opts := sandbox.Options{}
	if *verbose {
		opts.Logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	}
	start := time.Now()
	fmt.Fprintln(stdout, "Starting the sandbox tailnet (control server, DERP, subnet router, internal DNS, demo apps)...")
	sb, err := sandbox.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stdout, "Stopping the sandbox...")
		sb.Close()
		fmt.Fprintln(stdout, "Stopped.")
	}()
	fmt.Fprintf(stdout, "Sandbox up in %v.\n\n", time.Since(start).Round(time.Millisecond))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "control URL:\t%s\n", sb.ControlURL())
	fmt.Fprintf(tw, "Tailscale API (stand-in):\t%s/api/v2\n", sb.APIURL())
	fmt.Fprintf(tw, "subnet router:\t%s (%s) advertises %s (approved) and %s (not approved)\n", sandbox.RouterName, sandbox.RouterIP, sandbox.ApprovedSubnet, sandbox.UnapprovedSubnet)
	fmt.Fprintf(tw, "internal DNS:\t%s. answered by %s:53, through the tailnet only\n", sandbox.InternalZone, sandbox.RouterIP)
	fmt.Fprintf(tw, "private app (subnet IP):\thttp://%s/ and https://%s/\n", sandbox.DemoAppIP, sandbox.DemoAppIP)
	fmt.Fprintf(tw, "private app (internal name):\thttp://%s/\n", sandbox.DemoAppName)
	fmt.Fprintf(tw, "private app (tailnet device):\thttp://%s.%s/ (%s)\n", sandbox.DeviceName, sandbox.MagicDNSSuffix, sb.Device().IPv4())
	tw.Flush()
	fmt.Fprintln(stdout)

	if err := demoReach(ctx, sb, stdout); err != nil {
		return err
	}
	if *once {
		return nil
	}
	fmt.Fprintln(stdout, "\nThe sandbox keeps running; press Ctrl-C to stop.")
	<-ctx.Done()
	return nil
}

// demoReach joins a client node and shows the private app reachable through
// the tailnet, and what is not.
func demoReach(ctx context.Context, sb *sandbox.Sandbox, stdout io.Writer) error {
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client, err := sb.NewNode(jctx, sandbox.NodeOptions{Hostname: "demo-client", AcceptRoutes: true})
	if err != nil {
		return err
	}
	defer client.Close()
	fmt.Fprintf(stdout, "A client node joined the tailnet as %s in %v. Through the tailnet it sees:\n", client.IPv4(), client.JoinDuration().Round(time.Millisecond))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, u := range []string{
		"http://" + sandbox.DemoAppIP.String() + "/",
		"http://" + sandbox.DemoAppName + "/",
		"http://" + sandbox.DeviceName + "." + sandbox.MagicDNSSuffix + "/",
		"http://" + sandbox.LegacyAppName + "/",
		"http://example.com/",
	} {
		fmt.Fprintf(tw, "  GET %s\t%s\n", u, demoFetch(ctx, client, u))
	}
	return tw.Flush()
}

func demoFetch(ctx context.Context, n *tailnet.Node, url string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, _ := strings.Cut(addr, ":")
		ips, err := n.LookupNetIP(ctx, host)
		if err != nil {
			return nil, err
		}
		var p uint16
		fmt.Sscan(port, &p)
		return n.DialTCP(ctx, netip.AddrPortFrom(ips[0], p))
	}}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return "refused: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	ok := ""
	if strings.Contains(string(body), sandbox.DemoAppText) {
		ok = fmt.Sprintf(" %q", sandbox.DemoAppText)
	}
	return fmt.Sprintf("%s%s in %v", resp.Status, ok, time.Since(start).Round(time.Millisecond))
}
