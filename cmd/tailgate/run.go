package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/jail"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/pkg/runner"
)

func init() {
	register(command{
		name:    "run",
		summary: "run a command with its traffic going through a run's tailnet proxy (tailgate run --env NAME -- COMMAND...)",
		run:     runRun,
	})
}

const runUsage = `usage: tailgate run --env NAME [--server URL] [--lifetime DURATION] [--jail auto|required|off] [--on-server] -- COMMAND [ARGS...]

Starts a run of the environment on the tailgate server (its own ephemeral
node on the environment's tailnet, behind a proxy that reaches only the
environment's targets), runs COMMAND with HTTP_PROXY, HTTPS_PROXY and
ALL_PROXY (and their lower-case forms) set to the run's proxy and NO_PROXY
cleared, keeps the run alive while COMMAND runs, ends it when COMMAND exits,
and exits with COMMAND's status. SIGINT and SIGTERM are passed on to COMMAND.

On Linux, COMMAND runs in its own network namespace (--jail, default
auto): the run's proxy is served there at the same address, and nothing
else is reachable: no route, no resolver. A tool that ignores the proxy or
resolves names itself (curl --socks5 rather than --socks5-hostname) fails
instead of reaching the host's network. No root is needed where the kernel
allows user namespaces. auto runs without the jail, with a warning, where
namespaces are unavailable; required refuses to.

The run's node joins the tailnet from this host, with a single-use key the
server mints for this run only, and its proxy listens on this host's
loopback: run it on any machine that reaches the server. On a headscale
tailnet the node stays on the server (its stored key must not leave it)
and the proxy is reached through the server's relay. --on-server keeps the
node on the server on Tailscale too (on the server's own host only). The
tailgate API token comes from TAILGATE_TOKEN (it is not passed on to
COMMAND).`

// proxyVars are the variables proxy-aware tools read; a run sets each to
// its proxy, in both cases, and clears noProxyVars so nothing bypasses it.
var (
	proxyVars   = []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
	noProxyVars = []string{"NO_PROXY"}
)

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nflags:\n", runUsage)
		fs.PrintDefaults()
	}
	env := fs.String("env", "", "environment `NAME` to run against")
	server := fs.String("server", envOr("TAILGATE_SERVER", "http://127.0.0.1:8080"), "tailgate server `URL` (env TAILGATE_SERVER)")
	lifetime := fs.Duration("lifetime", 0, "end the run after this long at the latest (default: the server's maximum)")
	jailFlag := fs.String("jail", envOr("TAILGATE_JAIL", "auto"), "run the command in its own network namespace: `auto`, required or off (env TAILGATE_JAIL)")
	onServer := fs.Bool("on-server", false, "keep the run's node and proxy in the server (its loopback): only on the server's own host")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	argv := fs.Args()
	if *env == "" {
		return usageError{"--env NAME is required"}
	}
	if len(argv) == 0 {
		return usageError{"give the command to run after --, e.g. tailgate run --env staging -- curl -s http://app.internal/"}
	}
	if *lifetime < 0 {
		return usageError{"--lifetime must be positive"}
	}
	jailMode, err := jail.ParseMode(*jailFlag)
	if err != nil {
		return usageError{err.Error()}
	}
	// Signals are ours from here on: the first SIGINT or SIGTERM goes to
	// the command, and the run ends once the command has exited.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	c, err := newRunnerClient(*server, stderr)
	if err != nil {
		return err
	}
	r, err := c.Start(ctx, *env, runner.Options{Lifetime: *lifetime, OnServer: *onServer})
	if err != nil {
		return err
	}
	printReady(stderr, r)

	j, err := newRunJail(r.ProxyURL, jailMode, stderr)
	if err != nil {
		if _, endErr := r.End(ctx); endErr != nil {
			fmt.Fprintf(stderr, "tailgate: ending run %s: %v\n", r.ID, endErr)
		}
		return err
	}
	defer j.Close()
	fmt.Fprintf(stderr, "tailgate: jail %s\n", j.Status())

	stopWatch := watchRun(r, stderr)
	code, runErr := runCommand(argv, r.ProxyURL, r.ID, j, sigs, stdout, stderr)
	stopWatch()
	rep, endErr := r.End(ctx)
	if endErr != nil {
		fmt.Fprintf(stderr, "tailgate: ending run %s: %v (the server's sweeper ends it when its lease lapses)\n", r.ID, endErr)
	}
	printRefusals(stderr, rep.Events)
	if runErr != nil {
		return runErr
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// newRunnerClient is the runner library's client for --server, with the
// token from TAILGATE_TOKEN.
func newRunnerClient(server string, stderr io.Writer) (*runner.Client, error) {
	c, err := newAPIClient(server)
	if err != nil {
		return nil, err
	}
	c.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return c.Client, nil
}

// printReady says the run is ready, where its proxy is and how long it
// took.
func printReady(w io.Writer, r *runner.Run) {
	if r.Pooled {
		fmt.Fprintf(w, "tailgate: run %s of %s ready: proxy %s (node from the server's warm pool, joined and warmed ahead)\n",
			r.ID, r.Env, r.ProxyURL)
	} else {
		fmt.Fprintf(w, "tailgate: run %s of %s ready: proxy %s (joined in %.0f ms, path warmed in %.0f ms)\n",
			r.ID, r.Env, r.ProxyURL, r.JoinMS, r.WarmMS)
	}
	fmt.Fprintf(w, "tailgate: node %s %s\n", r.Node, placementWords(r.Placement))
}

func placementWords(p string) string {
	switch p {
	case run.PlacementRunner:
		return "joined the tailnet from this host"
	case run.PlacementRelay:
		return "is on the server (its control's key never leaves it); this host reaches the proxy through the server's relay"
	}
	return "is on the server; its proxy is on the server's loopback"
}

// watchRun says once, on stderr, when the server ends the run while the
// command runs (its lifetime, say): the command's proxy is then closed.
func watchRun(r *runner.Run, stderr io.Writer) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-quit:
		case <-r.Done():
			msg := "the run has ended"
			var ae *runner.APIError
			if errors.As(r.Err(), &ae) {
				msg = ae.Message
			}
			fmt.Fprintf(stderr, "tailgate: %s; the command's proxy is closed\n", msg)
		}
	}()
	return func() { close(quit); <-done }
}

// runCommand runs argv with the run's proxy in its environment, passes
// SIGINT and SIGTERM on to it, and returns its exit status (128+N when a
// signal N killed it, as shells do).
func runCommand(argv []string, proxyURL, runID string, j *jail.Jail, sigs <-chan os.Signal, stdout, stderr io.Writer) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if errors.Is(cmd.Err, exec.ErrNotFound) {
		fmt.Fprintf(stderr, "tailgate run: %v\n", cmd.Err)
		return 127, nil
	}
	cmd.Env = commandEnv(os.Environ(), proxyURL, runID)
	cmd.Stdin = os.Stdin
	cmd.Stdout, cmd.Stderr = stdout, stderr
	jail.KillWithParent(cmd)
	if err := j.Wrap(cmd); err != nil {
		return 1, err
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "tailgate run: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 127, nil
		}
		return 126, nil
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var once sync.Once
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
			once.Do(func() {
				fmt.Fprintf(stderr, "tailgate: %v passed on to the command; the run ends when it exits\n", s)
			})
		case err := <-waited:
			var ee *exec.ExitError
			switch {
			case err == nil:
				return 0, nil
			case errors.As(err, &ee):
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return ee.ExitCode(), nil
			default:
				return 1, fmt.Errorf("wait for the command: %w", err)
			}
		}
	}
}

// newRunJail prepares the command's jail: the run's proxy served into a
// network namespace of its own, or no jail where mode allows that.
func newRunJail(proxyURL string, mode jail.Mode, stderr io.Writer) (*jail.Jail, error) {
	u, err := url.Parse(proxyURL)
	if err != nil {
		return nil, fmt.Errorf("the run's proxy URL %q: %w", proxyURL, err)
	}
	ap, err := netip.ParseAddrPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("the run's proxy URL %q is not an IP and port: %w", proxyURL, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return jail.New(jail.Options{Mode: mode, Forward: []netip.AddrPort{ap}, Logger: log})
}

// commandEnv is env with every proxy variable pointing at the run's proxy,
// NO_PROXY gone (nothing may bypass the proxy), the tailgate API token
// removed (the command does not need it) and the run named.
func commandEnv(env []string, proxyURL, runID string) []string {
	drop := map[string]bool{"TAILGATE_TOKEN": true}
	for _, v := range append(append([]string{}, proxyVars...), noProxyVars...) {
		drop[v] = true
	}
	out := make([]string, 0, len(env)+8)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if drop[strings.ToUpper(k)] {
			continue
		}
		out = append(out, kv)
	}
	for _, v := range proxyVars {
		out = append(out, v+"="+proxyURL, strings.ToLower(v)+"="+proxyURL)
	}
	return append(out, "TAILGATE_RUN_ID="+runID, "TAILGATE_PROXY_URL="+proxyURL)
}

// printRefusals lists what the run's proxy refused, so a failing command
// says why: a public host, a port that is not a target, a name the
// tailnet does not resolve.
func printRefusals(w io.Writer, events []egress.Event) {
	n := 0
	for _, e := range events {
		if !e.Refused {
			continue
		}
		n++
		if n > 10 {
			continue
		}
		fmt.Fprintf(w, "tailgate: refused %s:%d: %s\n", e.Host, e.Port, refusalText(e.Reason, e.ReasonText))
	}
	if n > 10 {
		fmt.Fprintf(w, "tailgate: ... and %d more refusals\n", n-10)
	}
}

func refusalText[R ~string](reason R, text string) string {
	if text == "" {
		return string(reason)
	}
	return fmt.Sprintf("%s (%s)", text, reason)
}
