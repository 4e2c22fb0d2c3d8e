package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/jail"
)

// DefaultChromiumPath is Debian's chromium package.
const DefaultChromiumPath = "/usr/bin/chromium"

// Options configure one flow run.
type Options struct {
	// ProxyURL is the run's egress proxy, e.g. "http://127.0.0.1:41234". Its
	// host must be a loopback IP literal: Chromium resolves no names at all.
	ProxyURL string
	// OutDir receives screenshots and report.json; it is created if missing.
	OutDir string
	// ChromiumPath defaults to DefaultChromiumPath.
	ChromiumPath string
	// StepTimeout bounds each step (page load, waiting for an element or a
	// text). Zero means 30 s.
	StepTimeout time.Duration
	// Logger receives step progress. Nil discards.
	Logger *slog.Logger
	// Jail says whether Chromium runs in its own network namespace, where
	// only the proxy is reachable (see package jail). Empty means auto.
	Jail jail.Mode
	// Events, when set, returns the run proxy's events once the flow is
	// done, and the report then sorts them by who caused them
	// ([Attribute]). tailgate flow run gets them from the server instead.
	Events func() []egress.Event
}

// Report is the outcome of a flow run, written as OutDir/report.json.
type Report struct {
	Flow     string        `json:"flow"`
	Status   string        `json:"status"` // "passed" or "failed"
	Error    string        `json:"error,omitempty"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Steps    []StepReport  `json:"steps"`
	// Screenshots are the files written, relative to OutDir.
	Screenshots []string `json:"screenshots"`
	// Requests are every network request Chromium made, in order.
	Requests []Request `json:"requests"`
	// Attribution lists what the proxy saw that no page made: the
	// browser's own background requests, refused, and anything else.
	Attribution
	// Jail says whether Chromium ran in its own network namespace.
	Jail jail.Status `json:"jail"`
}

// StepReport is the outcome of one step.
type StepReport struct {
	Index      int           `json:"index"` // 1-based
	Kind       StepKind      `json:"kind"`
	Line       int           `json:"line"`
	Step       string        `json:"step"`
	Status     string        `json:"status"` // "passed", "failed" or "skipped"
	Duration   time.Duration `json:"duration_ns"`
	Error      string        `json:"error,omitempty"`
	Screenshot string        `json:"screenshot,omitempty"`
}

// Request is Chromium's view of one network request. The run merges the
// proxy's events (resolved address, refusal reason) by Host and Port.
type Request struct {
	// URL without query or fragment (they may carry secrets).
	URL      string        `json:"url"`
	Host     string        `json:"host"`
	Port     int           `json:"port"`
	Method   string        `json:"method"`
	Type     string        `json:"type,omitempty"` // Document, Script, XHR, ...
	Status   int           `json:"status,omitempty"`
	Bytes    int64         `json:"bytes"` // encoded bytes received
	Duration time.Duration `json:"duration_ns"`
	// Failure is Chromium's error text, e.g. net::ERR_TUNNEL_CONNECTION_FAILED
	// when the proxy refused a CONNECT.
	Failure string `json:"failure,omitempty"`
	// Refusal is the proxy's X-Tailgate-Refusal code, when it answered.
	Refusal string `json:"refusal,omitempty"`
}

const (
	statusPassed  = "passed"
	statusFailed  = "failed"
	statusSkipped = "skipped"
)

// Run runs the flow in a fresh headless Chromium whose only way out is
// opts.ProxyURL. It returns the report and, if the flow did not pass, an
// error naming the failed step. The report is also written to
// OutDir/report.json, whatever the outcome.
func Run(ctx context.Context, f Flow, opts Options) (Report, error) {
	rep := Report{Flow: f.Name, Started: time.Now(), Steps: []StepReport{}, Screenshots: []string{}, Requests: []Request{},
		Attribution: Attribution{Background: []BackgroundRequest{}, Unattributed: []egress.Event{}}}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = 30 * time.Second
	}
	if opts.ChromiumPath == "" {
		opts.ChromiumPath = DefaultChromiumPath
	}
	if opts.OutDir == "" {
		return rep, errors.New("flow: an output directory is required")
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return rep, fmt.Errorf("flow: create output directory: %w", err)
	}
	proxy, err := checkProxyURL(opts.ProxyURL)
	if err != nil {
		return rep, err
	}

	runErr := run(ctx, f, opts, proxy, log, &rep)
	rep.Duration = time.Since(rep.Started)
	if opts.Events != nil {
		rep.Attribution = Attribute(rep.Requests, opts.Events())
	}
	rep.Status = statusPassed
	if runErr != nil {
		rep.Status = statusFailed
		rep.Error = runErr.Error()
	}
	if err := writeReport(filepath.Join(opts.OutDir, "report.json"), rep); err != nil {
		return rep, errors.Join(runErr, err)
	}
	return rep, runErr
}

// runProxy is the run's proxy as Chromium is told of it.
type runProxy struct {
	url  string // scheme://ip:port
	addr netip.AddrPort
}

// checkProxyURL insists on a loopback IP literal: with every name mapped to
// NOTFOUND, Chromium could not resolve "localhost" anyway, and anything not
// on loopback would not be the run's proxy.
func checkProxyURL(raw string) (runProxy, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return runProxy{}, fmt.Errorf("flow: proxy URL %q is not a URL like http://127.0.0.1:PORT", raw)
	}
	if u.Scheme != "http" && u.Scheme != "socks5" {
		return runProxy{}, fmt.Errorf("flow: proxy URL %q: scheme must be http or socks5", raw)
	}
	ap, err := netip.ParseAddrPort(u.Host)
	if err != nil || !ap.Addr().IsLoopback() {
		return runProxy{}, fmt.Errorf("flow: proxy URL %q: host must be a loopback IP and port", raw)
	}
	return runProxy{url: u.Scheme + "://" + ap.String(), addr: ap}, nil
}

func writeReport(path string, rep Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("flow: encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("flow: write report: %w", err)
	}
	return nil
}

// chromiumFlags start Chromium so nothing leaks around the proxy.
func chromiumFlags(opts Options, proxy, profile string, j *jail.Jail) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(opts.ChromiumPath),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(screenWidth, screenHeight),
		// Chromium refuses to run as root with its sandbox; in a jail it is
		// root of its own user namespace.
		chromedp.Flag("no-sandbox", os.Geteuid() == 0 || j.Status().On),
		// In the jail, Chromium starts through the jail's keeper.
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			jail.KillWithParent(cmd)
			if j.Status().On {
				// chromedp adds the browser's environment after this; the
				// keeper's variables go first and it removes them.
				cmd.Env = []string{}
				j.Wrap(cmd)
			}
		}),

		// The proxy is the only way out, for every scheme, even loopback.
		chromedp.ProxyServer(proxy),
		chromedp.Flag("proxy-bypass-list", "<-loopback>"),
		// Chromium resolves no names itself; the proxy's IP literal needs none.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("force-webrtc-ip-handling-policy", "disable_non_proxied_udp"),
		chromedp.Flag("webrtc-ip-handling-policy", "disable_non_proxied_udp"),
		chromedp.Flag("dns-prefetch-disable", true),
		chromedp.Flag("no-pings", true),

		// Background services that phone home.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		// The account reconcilor asks accounts.google.com/ListAccounts at
		// start; pointing GAIA at a dead loopback port stops it (measured:
		// no request at all). The AI-mode eligibility check
		// (www.google.com/async/folae) is one of the features below.
		chromedp.Flag("gaia-url", "http://127.0.0.1:9/"),
		chromedp.Flag("disable-features", strings.Join([]string{
			"Translate", "OptimizationHints", "OptimizationGuideModelDownloading",
			"MediaRouter", "DialMediaRouteProvider", "AutofillServerCommunication",
			"CertificateTransparencyComponentUpdater", "NetworkTimeServiceQuerying",
			"SafeBrowsingEnhancedProtection", "InterestFeedContentSuggestions",
			"DnsOverHttps", "AsyncDns", "NetworkPrediction", "PrivacySandboxSettings4",
			"ChromeWhatsNewUI", "Prerender2", "SpareRendererForSitePerProcess",
			"AimEligibility", "AimServerEligibility", "AiModeOmniboxEntryPoint", "AimEntrypoint", "AimEnabled", "PreconnectToSearch",
		}, ",")),

		// Quiet, deterministic automation.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-popup-blocking", true),
		chromedp.Flag("enable-automation", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("force-color-profile", "srgb"),

		// No proxy or other settings from our environment: only what the
		// browser needs to run.
		chromedp.NoInheritEnv,
		chromedp.Env("HOME="+profile, "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "TMPDIR="+profile),
	}
}

// Screenshot size (the browser window).
const (
	screenWidth  = 1280
	screenHeight = 800
)

func run(ctx context.Context, f Flow, opts Options, proxy runProxy, log *slog.Logger, rep *Report) error {
	if _, err := exec.LookPath(opts.ChromiumPath); err != nil {
		return fmt.Errorf("flow: start chromium: %w (install Debian's chromium package)", err)
	}
	profile, err := os.MkdirTemp("", "tailgate-chromium-")
	if err != nil {
		return fmt.Errorf("flow: create browser profile: %w", err)
	}
	defer os.RemoveAll(profile)
	if err := writeProfilePreferences(profile); err != nil {
		return err
	}

	j, err := jail.New(jail.Options{Mode: opts.Jail, Forward: []netip.AddrPort{proxy.addr}, Logger: log})
	if err != nil {
		return fmt.Errorf("flow: %w", err)
	}
	defer j.Close()
	rep.Jail = j.Status()

	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, chromiumFlags(opts, proxy.url, profile, j)...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx,
		chromedp.WithLogf(func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) }),
		chromedp.WithErrorf(func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) }),
	)
	started := false
	defer func() {
		if !started {
			// chromedp's cancel would wait forever for a browser that never
			// started; ending the allocator context ends bctx too.
			cancelAlloc()
			return
		}
		// Close the browser gracefully and wait for it to exit, so the
		// profile directory can be removed.
		// A browser that does not close in time is killed.
		kill := time.AfterFunc(15*time.Second, cancelAlloc)
		defer kill.Stop()
		_ = chromedp.Cancel(bctx)
		cancelBrowser()
	}()

	// The first action starts the browser. It runs on the browser's own
	// context, because a timeout on it would end the browser; a browser that
	// does not start within a minute is killed instead.
	kill := time.AfterFunc(time.Minute, cancelAlloc)
	err = chromedp.Do(bctx, chromedp.Func(func(context.Context, *chromedp.Target) error { return nil }))
	kill.Stop()
	if err != nil {
		return fmt.Errorf("flow: start chromium %s: %w", opts.ChromiumPath, err)
	}
	started = true
	nl := newNetLog()
	if err := chromedp.Listen(bctx, nl.handle); err != nil {
		return fmt.Errorf("flow: watch network events: %w", err)
	}
	defer func() { rep.Requests = nl.requests() }()

	var failed error
	for i, s := range f.Steps {
		sr := StepReport{Index: i + 1, Kind: s.Kind, Line: s.Line, Step: s.String(), Status: statusSkipped}
		if failed != nil {
			rep.Steps = append(rep.Steps, sr)
			continue
		}
		t0 := time.Now()
		sctx, cancel := context.WithTimeout(bctx, opts.StepTimeout)
		shot, err := runStep(sctx, s, opts)
		cancel()
		sr.Duration = time.Since(t0)
		sr.Status = statusPassed
		if shot != "" {
			sr.Screenshot = shot
			rep.Screenshots = append(rep.Screenshots, shot)
		}
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				err = fmt.Errorf("timed out after %s: %w", opts.StepTimeout, err)
			}
			sr.Status, sr.Error = statusFailed, err.Error()
			failed = fmt.Errorf("flow %q failed at step %d (line %d, %s): %w", f.Name, i+1, s.Line, s, err)
		}
		log.Info("flow step", "flow", f.Name, "step", sr.Index, "what", sr.Step, "status", sr.Status, "err", sr.Error)
		rep.Steps = append(rep.Steps, sr)
	}
	return failed
}

// profilePreferences turn off what command-line switches cannot: typing in
// a form field makes the spell checker download its dictionary from
// redirector.gvt1.com (measured), and the spelling service and search
// suggestions would send page text to Google.
var profilePreferences = map[string]any{
	"browser":               map[string]any{"enable_spellchecking": false},
	"spellcheck":            map[string]any{"dictionaries": []string{}, "dictionary": "", "use_spelling_service": false},
	"search":                map[string]any{"suggest_enabled": false},
	"alternate_error_pages": map[string]any{"enabled": false},
	"net":                   map[string]any{"network_prediction_options": 2}, // never
	"safebrowsing":          map[string]any{"enabled": false},
	"translate":             map[string]any{"enabled": false},
}

// writeProfilePreferences seeds the fresh profile's Default/Preferences.
func writeProfilePreferences(profile string) error {
	dir := filepath.Join(profile, "Default")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("flow: create browser profile: %w", err)
	}
	b, err := json.Marshal(profilePreferences)
	if err != nil {
		return fmt.Errorf("flow: encode browser preferences: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Preferences"), b, 0o600); err != nil {
		return fmt.Errorf("flow: write browser preferences: %w", err)
	}
	return nil
}
