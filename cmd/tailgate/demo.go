package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tailgate-dev/tailgate/internal/browser"
	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	tgrun "github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

func init() {
	register(command{
		name:    "demo",
		summary: "walk through connect → verify → run against an embedded sandbox tailnet",
		run:     runDemo,
	})
}

// demoEnv is the environment the walk-through connects.
const demoEnv = "staging"

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	once := fs.Bool("once", false, "exit after the walk-through instead of serving until interrupted")
	verbose := fs.Bool("v", false, "print the sandbox's tailnet logs and tailgate's logs")
	browser := fs.String("chromium", browser.DefaultChromiumPath, "Chromium `path` for the browser step (skipped when missing)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"demo takes no arguments"}
	}
	opts := sandbox.Options{}
	logLevel := slog.LevelWarn + 4 // quiet unless -v
	if *verbose {
		opts.Logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
		logLevel = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel}))
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	// 1. The customer's tailnet.
	start := time.Now()
	say("== 1. A customer's tailnet (embedded sandbox) ==")
	sb, err := sandbox.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		say("Stopping the sandbox...")
		sb.Close()
		say("Stopped.")
	}()
	say("Sandbox up in %v.", time.Since(start).Round(time.Millisecond))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "control URL:\t%s\n", sb.ControlURL())
	fmt.Fprintf(tw, "Tailscale API (stand-in):\t%s/api/v2\n", sb.APIURL())
	fmt.Fprintf(tw, "subnet router:\t%s (%s) advertises %s (approved) and %s (not approved)\n", sandbox.RouterName, sandbox.RouterIP, sandbox.ApprovedSubnet, sandbox.UnapprovedSubnet)
	fmt.Fprintf(tw, "internal DNS:\t%s. answered by %s:53, through the tailnet only\n", sandbox.InternalZone, sandbox.RouterIP)
	fmt.Fprintf(tw, "private app (subnet IP):\thttp://%s/ and https://%s/\n", sandbox.DemoAppIP, sandbox.DemoAppIP)
	fmt.Fprintf(tw, "private app (internal name):\thttp://%s/\n", sandbox.DemoAppName)
	fmt.Fprintf(tw, "private app (tailnet device):\thttp://%s.%s/ (%s)\n", sandbox.DeviceName, sandbox.MagicDNSSuffix, sb.Device().IPv4())
	tw.Flush()

	// 2. tailgate itself: state in a temporary directory, API on loopback.
	dir, err := os.MkdirTemp("", "tailgate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(ctx, filepath.Join(dir, "tailgate.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	keyring, err := vault.LoadOrCreateKeyFile(filepath.Join(dir, "tailgate.key"))
	if err != nil {
		return err
	}
	org, err := st.CreateOrg(ctx, "demo")
	if err != nil {
		return err
	}
	adminToken, _, err := st.CreateAPIToken(ctx, org.ID, "demo admin", store.RoleAdmin)
	if err != nil {
		return err
	}
	runnerToken, _, err := st.CreateAPIToken(ctx, org.ID, "demo runner", store.RoleRunner)
	if err != nil {
		return err
	}
	// The same API as tailgate serve: runs, flows, heartbeats and tokens
	// work against it, from this process or another terminal.
	stk, err := startStack(ctx, stackConfig{Store: st, Vault: keyring, APIBaseURL: sb.APIURL(), ControlURL: sb.ControlURL(), Logger: log,
		Outbound: outbound.AllowLoopback()}) // a self-hosted control tried with the demo runs on this host
	if err != nil {
		return err
	}
	defer stk.Close()
	runs := stk.Runs
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: stk.Handler, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	server := "http://" + ln.Addr().String()
	client := newClient(server, adminToken)
	say("\n== 2. tailgate API on %s (SQLite and vault key in %s) ==", server, dir)

	// 3. Connect.
	targets := []string{sandbox.DemoAppName + ":80", sandbox.DemoAppName + ":443", sandbox.DeviceName + ":80", sandbox.LegacyAppIP.String() + ":80"}
	say("\n== 3. Connect environment %q with a one-time Tailscale API token ==", demoEnv)
	say("PUT %s/v1/environments/%s/private-network  targets: %s", server, demoEnv, strings.Join(targets, ", "))
	if _, err := client.do(ctx, "POST", "/v1/environments", map[string]any{"name": demoEnv}, nil); err != nil {
		return fmt.Errorf("create environment: %w", err)
	}
	var res connect.Result
	body := map[string]any{"api_token": sb.NewAPIToken(), "targets": targets}
	if _, err := client.do(ctx, "PUT", envPath(demoEnv), body, &res); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	printConnect(stdout, res)
	say("The API token was used for this request only; the OAuth client's secret is stored sealed and no endpoint returns it.")

	// 4. Verify.
	say("\n== 4. Verify: a short-lived ephemeral node checks every target ==")
	var ver connect.Verification
	if _, err := client.do(ctx, "POST", envPath(demoEnv)+"/verify", nil, &ver); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	printVerification(stdout, ver)

	// 5. Run.
	say("\n== 5. Run: a session joins the tailnet behind its own loopback proxy ==")
	info, err := runs.Start(ctx, org.ID, demoEnv, tgrun.Options{NoLease: true})
	if err != nil {
		return fmt.Errorf("start run: %w", err)
	}
	say("run %s: node %s joined in %.0f ms, path warm in %.0f ms, proxy %s", info.ID, info.Node, info.JoinMS, info.WarmMS, info.ProxyURL)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, u := range []string{"http://" + sandbox.DemoAppName + "/", "http://" + sandbox.DeviceName + "/", "http://example.com/", "http://" + sandbox.DemoAppName + ":8080/"} {
		fmt.Fprintf(tw, "  GET %s\t%s\n", u, demoFetch(ctx, info.ProxyURL, u))
	}
	tw.Flush()
	if err := demoBrowser(ctx, *browser, info.ProxyURL, dir, stdout); err != nil {
		say("  browser: %v", err)
	}

	if *once {
		ended, _ := runs.End(ctx, org.ID, info.ID, "demo finished")
		say("\nrun %s ended: %s; its node left the tailnet.", ended.ID, ended.EndReason)
		return nil
	}
	flowFile := filepath.Join(dir, "smoke.yaml")
	if err := os.WriteFile(flowFile, []byte(demoFlowYAML), 0o644); err != nil {
		return err
	}
	tg := demoCommandName()
	say("\nThe run stays open. Try it yourself (only the targets are reachable, and only through the tailnet):")
	say("  curl -x %s http://%s/", info.ProxyURL, sandbox.DemoAppName)
	say("  curl -x %s http://example.com/", info.ProxyURL)
	say("\nThe API serves everything tailgate serve does. In another terminal, from this directory:")
	say("  export TAILGATE_SERVER=%s TAILGATE_TOKEN=%s", server, runnerToken)
	say("  %s run --env %s -- curl -s http://%s/", tg, demoEnv, sandbox.DemoAppName)
	say("  %s flow run %s --env %s", tg, flowFile, demoEnv)
	say("  %s env status %s   # admin calls need the admin token: TAILGATE_TOKEN=%s", tg, demoEnv, adminToken)
	say("\nWeb console: %s/console/ (sign in with the admin token above, or the runner token)", server)
	say("\nThe sandbox keeps running; press Ctrl-C to stop.")
	<-ctx.Done()
	return nil
}

// demoFlowYAML is the flow the demo offers to run with tailgate flow run.
var demoFlowYAML = fmt.Sprintf(`name: demo smoke
steps:
  - goto: http://%s/
  - expect_text: %q
  - screenshot: app.png
`, sandbox.DemoAppName, sandbox.DemoAppText)

// demoCommandName is how the user started this binary, for the commands
// the demo prints: "go run ./cmd/tailgate" when started by go run (its
// binary is in a temporary build directory), else the binary's name.
func demoCommandName() string {
	exe := os.Args[0]
	if strings.Contains(exe, "go-build") {
		return "go run ./cmd/tailgate"
	}
	if exe == "" {
		return "tailgate"
	}
	return exe
}

// demoFetch GETs rawURL through the run's proxy and summarises the answer.
func demoFetch(ctx context.Context, proxyURL, rawURL string) string {
	pu, _ := url.Parse(proxyURL)
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	defer c.CloseIdleConnections()
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, "GET", rawURL, nil)
	resp, err := c.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if reason := resp.Header.Get("X-Tailgate-Refusal"); reason != "" {
		return fmt.Sprintf("refused (%s): %s", reason, strings.TrimSpace(string(b)))
	}
	note := ""
	if strings.Contains(string(b), sandbox.DemoAppText) {
		note = fmt.Sprintf(" %q", sandbox.DemoAppText)
	}
	return fmt.Sprintf("%s%s in %v", resp.Status, note, time.Since(start).Round(time.Millisecond))
}

// demoBrowser loads the private app by its internal name in headless
// Chromium through the run's proxy, when Chromium is installed.
func demoBrowser(ctx context.Context, chromium, proxyURL, dir string, stdout io.Writer) error {
	if _, err := exec.LookPath(chromium); err != nil {
		fmt.Fprintf(stdout, "  browser: skipped (%s not installed; apt-get install chromium)\n", chromium)
		return nil
	}
	f, err := browser.Parse([]byte(demoFlowYAML))
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "flow")
	rep, err := browser.Run(ctx, f, browser.Options{ProxyURL: proxyURL, OutDir: out, ChromiumPath: chromium, StepTimeout: 30 * time.Second})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "  headless Chromium loaded http://%s/ through the run: %s in %v", sandbox.DemoAppName, rep.Status, rep.Duration.Round(time.Millisecond))
	if len(rep.Screenshots) > 0 {
		fmt.Fprintf(stdout, ", screenshot %s", filepath.Join(out, rep.Screenshots[0]))
	}
	fmt.Fprintln(stdout)
	return nil
}
