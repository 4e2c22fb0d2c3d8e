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
	"time"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/jail"
)

func init() {
	register(command{
		name:    "run",
		summary: "run a command with its traffic going through a run's tailnet proxy (tailgate run --env NAME -- COMMAND...)",
		run:     runRun,
	})
}

const runUsage = `usage: tailgate run --env NAME [--server URL] [--lifetime DURATION] [--jail auto|required|off] -- COMMAND [ARGS...]

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

The run's proxy listens on the server's loopback: run this on the same host
as tailgate serve. The tailgate API token comes from TAILGATE_TOKEN (it is
not passed on to COMMAND).`

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

	c, err := newAPIClient(*server)
	if err != nil {
		return err
	}
	r, err := startRun(ctx, c, *env, *lifetime)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "tailgate: run %s of %s ready: proxy %s (joined in %.0f ms, path warmed in %.0f ms)\n",
		r.ID, r.Env, r.ProxyURL, r.JoinMS, r.WarmMS)

	j, err := newRunJail(r, jailMode, stderr)
	if err != nil {
		if _, endErr := endRun(ctx, c, r.ID); endErr != nil {
			fmt.Fprintf(stderr, "tailgate: ending run %s: %v\n", r.ID, endErr)
		}
		return err
	}
	defer j.Close()
	fmt.Fprintf(stderr, "tailgate: jail %s\n", j.Status())

	hb := keepAlive(c, r, stderr)
	code, runErr := runCommand(argv, r, j, sigs, stdout, stderr)
	hb.stop()
	ended, endErr := endRun(ctx, c, r.ID)
	if endErr != nil {
		fmt.Fprintf(stderr, "tailgate: ending run %s: %v (the server's sweeper ends it when its lease lapses)\n", r.ID, endErr)
	} else {
		printRefusals(stderr, ended)
	}
	if runErr != nil {
		return runErr
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// startRun asks the server for a run of env and returns it once ready.
func startRun(ctx context.Context, c *apiClient, env string, lifetime time.Duration) (api.Run, error) {
	var body any
	if lifetime > 0 {
		secs := int64((lifetime + time.Second - 1) / time.Second)
		body = api.StartRunRequest{LifetimeSeconds: secs}
	}
	var r api.Run
	if _, err := c.do(ctx, "POST", "/v1/environments/"+url.PathEscape(env)+"/runs", body, &r); err != nil {
		return api.Run{}, fmt.Errorf("start a run of %s: %w", env, err)
	}
	if r.ProxyURL == "" {
		return api.Run{}, fmt.Errorf("start a run of %s: the server's answer has no proxy URL", env)
	}
	return r, nil
}

// endRun ends the run and returns it with its proxy events. It runs even
// when ctx is cancelled (a signal): the run must not outlive the command.
func endRun(ctx context.Context, c *apiClient, id string) (api.Run, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var r api.Run
	_, err := c.do(ctx, "DELETE", "/v1/runs/"+url.PathEscape(id), nil, &r)
	return r, err
}

// heartbeats keeps a run's lease from lapsing while its client works.
type heartbeats struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (h *heartbeats) stop() {
	h.cancel()
	<-h.done
}

// keepAlive sends a heartbeat every third of the run's lease (10 s if the
// server did not say) until stopped. A run the server has ended is said
// once on stderr, and the heartbeats stop: its proxy is gone.
func keepAlive(c *apiClient, r api.Run, stderr io.Writer) *heartbeats {
	every := 10 * time.Second
	if r.LeaseSeconds > 0 {
		every = time.Duration(r.LeaseSeconds * float64(time.Second) / 3)
	}
	every = max(every, 100*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	h := &heartbeats{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			hctx, hcancel := context.WithTimeout(ctx, every)
			_, err := c.do(hctx, "POST", "/v1/runs/"+url.PathEscape(r.ID)+"/heartbeat", nil, nil)
			hcancel()
			var se *serverError
			switch {
			case err == nil:
				failing = false
			case ctx.Err() != nil:
				return
			case errors.As(err, &se) && se.e.Code == errcode.RunEnded:
				fmt.Fprintf(stderr, "tailgate: %s; the command's proxy is closed\n", se.e.Message)
				return
			case !failing:
				// Say it once per outage, not every tick.
				failing = true
				fmt.Fprintf(stderr, "tailgate: heartbeat for run %s failed: %v (retrying)\n", r.ID, err)
			}
		}
	}()
	return h
}

// runCommand runs argv with the run's proxy in its environment, passes
// SIGINT and SIGTERM on to it, and returns its exit status (128+N when a
// signal N killed it, as shells do).
func runCommand(argv []string, r api.Run, j *jail.Jail, sigs <-chan os.Signal, stdout, stderr io.Writer) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if errors.Is(cmd.Err, exec.ErrNotFound) {
		fmt.Fprintf(stderr, "tailgate run: %v\n", cmd.Err)
		return 127, nil
	}
	cmd.Env = commandEnv(os.Environ(), r)
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
func newRunJail(r api.Run, mode jail.Mode, stderr io.Writer) (*jail.Jail, error) {
	u, err := url.Parse(r.ProxyURL)
	if err != nil {
		return nil, fmt.Errorf("the run's proxy URL %q: %w", r.ProxyURL, err)
	}
	ap, err := netip.ParseAddrPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("the run's proxy URL %q is not an IP and port: %w", r.ProxyURL, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return jail.New(jail.Options{Mode: mode, Forward: []netip.AddrPort{ap}, Logger: log})
}

// commandEnv is env with every proxy variable pointing at the run's proxy,
// NO_PROXY gone (nothing may bypass the proxy), the tailgate API token
// removed (the command does not need it) and the run named.
func commandEnv(env []string, r api.Run) []string {
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
		out = append(out, v+"="+r.ProxyURL, strings.ToLower(v)+"="+r.ProxyURL)
	}
	return append(out, "TAILGATE_RUN_ID="+r.ID, "TAILGATE_PROXY_URL="+r.ProxyURL)
}

// printRefusals lists what the run's proxy refused, so a failing command
// says why: a public host, a port that is not a target, a name the
// tailnet does not resolve.
func printRefusals(w io.Writer, r api.Run) {
	n := 0
	for _, e := range r.Events {
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
