package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/tailgate-dev/tailgate/internal/browser"
	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/jail"
	"github.com/tailgate-dev/tailgate/pkg/runner"
)

func init() {
	register(command{
		name:    "flow",
		summary: "run a browser flow (headless Chromium) through a run of an environment",
		run:     runFlow,
	})
}

const flowUsage = `usage: tailgate flow run FLOW.yaml --env NAME [--out DIR] [--server URL] [--chromium PATH] [--jail auto|required|off]

Starts a run of the environment on the tailgate server, runs the flow's
steps (goto, click, fill, expect_text, screenshot) in headless Chromium
whose only way out is the run's proxy, ends the run, and writes the
screenshots and report.json to DIR. The report lists every request the
browser made with what the proxy saw of it: the tailnet address it
resolved to, bytes, duration, and why it was refused. Exits 1 if the flow
failed.

On Linux, Chromium runs in its own network namespace (--jail, default
auto): only the run's proxy is reachable there, with no route and no
resolver. auto runs without it where namespaces are unavailable, with a
warning; required refuses to. Requests the browser makes on its own
(updates, sign-in) are refused by the proxy and listed as
browser_background in the report.

The run's node joins from this host (see tailgate run --help for where it
lives on headscale, and --on-server). The tailgate API token comes from
TAILGATE_TOKEN.`

func runFlow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := oneCommand(args, "flow", "run", flowUsage, stderr); err != nil {
		return err
	}
	fs := newFlagSet("flow run", stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nflags:\n", flowUsage)
		fs.PrintDefaults()
	}
	env := fs.String("env", "", "environment `NAME` to run against")
	out := fs.String("out", "", "output `DIR` for screenshots and report.json (default: tailgate-flow-<run id>)")
	server := fs.String("server", envOr("TAILGATE_SERVER", "http://127.0.0.1:8080"), "tailgate server `URL` (env TAILGATE_SERVER)")
	chromium := fs.String("chromium", envOr("TAILGATE_CHROMIUM", browser.DefaultChromiumPath), "Chromium `binary` (env TAILGATE_CHROMIUM)")
	stepTimeout := fs.Duration("step-timeout", 30*time.Second, "how long each step may take")
	onServer := fs.Bool("on-server", false, "keep the run's node and proxy in the server (its loopback): only on the server's own host")
	jailFlag := fs.String("jail", envOr("TAILGATE_JAIL", "auto"), "run Chromium in its own network namespace: `auto`, required or off (env TAILGATE_JAIL)")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"flow run takes one flow file, e.g. tailgate flow run smoke.yaml --env staging"}
	}
	if *env == "" {
		return usageError{"--env NAME is required"}
	}
	jailMode, err := jail.ParseMode(*jailFlag)
	if err != nil {
		return usageError{err.Error()}
	}
	// A flow that does not parse is refused before a run is started.
	f, err := browser.Load(pos[0])
	if err != nil {
		return err
	}
	c, err := newRunnerClient(*server, stderr)
	if err != nil {
		return err
	}
	r, err := c.Start(ctx, *env, runner.Options{OnServer: *onServer})
	if err != nil {
		return err
	}
	printReady(stderr, r)
	dir := *out
	if dir == "" {
		dir = "tailgate-flow-" + r.ID
	}

	stopWatch := watchRun(r, stderr)
	rep, flowErr := browser.Run(ctx, f, browser.Options{
		ProxyURL: r.ProxyURL, OutDir: dir, ChromiumPath: *chromium, StepTimeout: *stepTimeout, Jail: jailMode,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	stopWatch()
	ended, endErr := r.End(ctx)
	if endErr != nil {
		fmt.Fprintf(stderr, "tailgate: ending run %s: %v (the server's sweeper ends it when its lease lapses)\n", r.ID, endErr)
	}
	merged := mergeReport(rep, ended)
	path := filepath.Join(dir, "report.json")
	if err := writeJSONFile(path, merged); err != nil {
		return err
	}
	printFlowSummary(stdout, merged, path)
	if flowErr != nil {
		return fmt.Errorf("flow %q failed: %w", f.Name, flowErr)
	}
	return nil
}

// FlowReport is report.json as tailgate flow run writes it: the browser's
// report, each request merged with what the run's proxy saw of it, and
// the run itself.
type FlowReport struct {
	browser.Report
	// Requests shadows the browser's list with the merged one.
	Requests []FlowRequest `json:"requests"`
	Run      FlowRun       `json:"run"`
	// ProxyEvents is everything the run's proxy recorded, in order,
	// including requests the browser did not report.
	ProxyEvents []egress.Event `json:"proxy_events"`
}

// FlowRequest is one browser request with the proxy's view of it.
type FlowRequest struct {
	browser.Request
	// Resolved is the tailnet address the proxy dialled for the host.
	Resolved string `json:"resolved,omitempty"`
	// RefusalReason and RefusalText say why the proxy refused the host
	// and port (the browser may only have seen a failed tunnel).
	RefusalReason string `json:"refusal_reason,omitempty"`
	RefusalText   string `json:"refusal_text,omitempty"`
}

// FlowRun is the run a flow went through.
type FlowRun struct {
	ID        string  `json:"id"`
	Env       string  `json:"environment"`
	Node      string  `json:"node"`
	Placement string  `json:"placement"`
	JoinMS    float64 `json:"join_ms"`
	WarmMS    float64 `json:"warm_ms"`
	EndReason string  `json:"end_reason,omitempty"`
}

// mergeReport matches the proxy's events to the browser's requests by
// host and port: one CONNECT tunnel carries many requests, so the match
// is per destination, not per request. A refused destination gives its
// reason to every request that did not get an answer.
func mergeReport(rep browser.Report, r runner.Report) FlowReport {
	type dest struct {
		resolved           string
		reason, reasonText string
	}
	byDest := map[string]*dest{}
	for _, e := range r.Events {
		k := browser.Destination(e.Host, int(e.Port))
		d := byDest[k]
		if d == nil {
			d = &dest{}
			byDest[k] = d
		}
		if e.Resolved.IsValid() && d.resolved == "" {
			d.resolved = e.Resolved.String()
		}
		if e.Refused && d.reason == "" {
			d.reason, d.reasonText = string(e.Reason), e.ReasonText
		}
	}
	out := FlowReport{
		Report:      rep,
		Requests:    make([]FlowRequest, 0, len(rep.Requests)),
		Run:         FlowRun{ID: r.ID, Env: r.Env, Node: r.Node, Placement: r.Placement, JoinMS: r.JoinMS, WarmMS: r.WarmMS, EndReason: r.EndReason},
		ProxyEvents: r.Events,
	}
	if out.ProxyEvents == nil {
		out.ProxyEvents = []egress.Event{}
	}
	out.Attribution = browser.Attribute(rep.Requests, r.Events)
	for _, q := range rep.Requests {
		m := FlowRequest{Request: q}
		if d := byDest[browser.Destination(q.Host, q.Port)]; d != nil {
			m.Resolved = d.resolved
			if d.reason != "" && (q.Status == 0 || q.Refusal != "" || q.Failure != "") {
				m.RefusalReason, m.RefusalText = d.reason, d.reasonText
			}
		}
		out.Requests = append(out.Requests, m)
	}
	return out
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func printFlowSummary(w io.Writer, rep FlowReport, path string) {
	fmt.Fprintf(w, "Flow %q %s in %.1f s (run %s, path warmed in %.0f ms).\n", rep.Flow, rep.Status, rep.Duration.Seconds(), rep.Run.ID, rep.Run.WarmMS)
	tw := table(w)
	fmt.Fprintln(tw, "STEP\tSTATUS\tTIME")
	for _, s := range rep.Steps {
		fmt.Fprintf(tw, "%d %s\t%s\t%.0f ms\n", s.Index, s.Step, s.Status, float64(s.Duration.Microseconds())/1000)
	}
	tw.Flush()
	for _, s := range rep.Steps {
		if s.Error != "" {
			fmt.Fprintf(w, "step %d (line %d) failed: %s\n", s.Index, s.Line, s.Error)
		}
	}
	refused := 0
	for _, q := range rep.Requests {
		if q.RefusalReason != "" || q.Refusal != "" {
			refused++
		}
	}
	fmt.Fprintf(w, "%d requests, %d refused by the run's proxy.\n", len(rep.Requests), refused)
	fmt.Fprintf(w, "jail: %s\n", rep.Jail)
	if n := len(rep.Background); n > 0 {
		fmt.Fprintf(w, "%d destinations the browser reached for on its own (browser_background), refused, never dialled:", n)
		for _, b := range rep.Background {
			fmt.Fprintf(w, " %s:%d", b.Host, b.Port)
		}
		fmt.Fprintln(w)
	}
	if n := len(rep.Unattributed); n > 0 {
		fmt.Fprintf(w, "WARNING: %d proxy requests no page of the flow made (see unattributed in the report)\n", n)
	}
	if refused > 0 {
		tw = table(w)
		fmt.Fprintln(tw, "REFUSED\tREASON")
		for _, q := range rep.Requests {
			if q.RefusalReason == "" && q.Refusal == "" {
				continue
			}
			reason := q.RefusalReason
			if reason == "" {
				reason = q.Refusal
			}
			fmt.Fprintf(tw, "%s\t%s\n", q.URL, refusalText(reason, q.RefusalText))
		}
		tw.Flush()
	}
	for _, s := range rep.Screenshots {
		fmt.Fprintf(w, "screenshot: %s\n", filepath.Join(filepath.Dir(path), s))
	}
	fmt.Fprintf(w, "report: %s\n", path)
}

// oneCommand checks that args start with want, the one command of a
// group that has only one ("flow run", "network allowlist"); for help, for
// nothing and for any other command it prints the group's usage.
func oneCommand(args []string, group, want, usage string, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, usage)
		if len(args) == 0 {
			return usageError{"missing command"}
		}
		return flag.ErrHelp
	}
	if args[0] != want {
		fmt.Fprintln(stderr, usage)
		return usageError{fmt.Sprintf("unknown %s command %q", group, args[0])}
	}
	return nil
}
