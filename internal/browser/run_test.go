package browser_test

import (
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailgate-dev/tailgate/internal/browser"
	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/egress/egresstest"
)

// privateApp is the customer's app: a page with a small search form.
func privateApp() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><html><head><title>private app</title></head><body>
<h1>Hello from the private app</h1>
<form action="/search" method="get"><input id="q" name="q" value="placeholder"><button id="go" type="submit">Go</button></form>
</body></html>`)
	})
	mux.HandleFunc("/search", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><html><body><p id="result">You searched for %s</p></body></html>`,
			strings.ReplaceAll(r.URL.Query().Get("q"), "<", "&lt;"))
	})
	return mux
}

type browserRun struct {
	proxy   *egress.Proxy
	tailnet *egresstest.Tailnet
	opts    browser.Options
}

func newBrowserRun(t *testing.T) *browserRun {
	t.Helper()
	if _, err := os.Stat(browser.DefaultChromiumPath); err != nil {
		t.Skipf("skipping browser test: %s is missing (install Debian's chromium package; CI does)", browser.DefaultChromiumPath)
	}
	app := httptest.NewServer(privateApp())
	t.Cleanup(app.Close)
	tn := egresstest.New()
	tn.AddName("app.internal.example", netip.MustParseAddr("100.64.0.5"))
	tn.Route(netip.MustParseAddrPort("100.64.0.5:80"), app.Listener.Addr().String())
	p, addr := egresstest.StartProxy(t, egress.Options{
		Targets:  []target.Target{{Host: "app.internal.example", Port: 80}},
		Resolver: tn,
		Dialer:   tn,
	})
	return &browserRun{proxy: p, tailnet: tn, opts: browser.Options{
		ProxyURL:    "http://" + addr.String(),
		OutDir:      t.TempDir(),
		StepTimeout: 20 * time.Second,
		Events:      p.Events,
	}}
}

// checkAttributed asserts that everything the proxy saw is explained:
// either a page of the flow asked for that destination, or it is the
// browser's own background request, refused before anything was resolved
// or dialled. Whatever Chromium's version adds, nothing may reach out
// unexplained. Where the jail is possible (Linux as root: CI), Chromium
// ran in it.
func checkAttributed(t *testing.T, b *browserRun, rep browser.Report) {
	t.Helper()
	t.Logf("jail: %s; browser background: %+v", rep.Jail, rep.Background)
	if len(rep.Unattributed) != 0 {
		t.Errorf("unattributed proxy events: %+v", rep.Unattributed)
	}
	pages := map[string]bool{}
	for _, q := range rep.Requests {
		pages[fmt.Sprintf("%s:%d", q.Host, q.Port)] = true
	}
	background := 0
	for _, ev := range b.proxy.Events() {
		if pages[fmt.Sprintf("%s:%d", ev.Host, ev.Port)] {
			continue
		}
		background++
		if !ev.Refused || ev.Resolved.IsValid() || ev.BytesUp != 0 || ev.BytesDown != 0 {
			t.Errorf("browser's own request %+v was not refused undialled", ev)
		}
		if ev.Host == "app.internal.example" {
			t.Errorf("a request for the private app is not attributed to a page: %+v", ev)
		}
	}
	n := 0
	for _, bg := range rep.Background {
		if bg.Source != browser.SourceBackground || bg.Reason == "" {
			t.Errorf("background entry %+v", bg)
		}
		n += bg.Count
	}
	if n != background {
		t.Errorf("report counts %d background requests, the proxy saw %d: %+v", n, background, rep.Background)
	}
	if slices.ContainsFunc(b.tailnet.Lookups(), func(h string) bool { return h != "app.internal.example" }) {
		t.Errorf("the tailnet resolver was asked for %v; only the private app's name may be resolved", b.tailnet.Lookups())
	}
	if os.Geteuid() == 0 && runtime.GOOS == "linux" && !rep.Jail.On {
		t.Errorf("Chromium ran outside the jail as root on Linux: %+v", rep.Jail)
	}
}

func mustParse(t *testing.T, y string) browser.Flow {
	t.Helper()
	f, err := browser.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func runFlow(t *testing.T, b *browserRun, f browser.Flow) (browser.Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return browser.Run(ctx, f, b.opts)
}

func TestFlowRunsInChromiumThroughTheProxy(t *testing.T) {
	b := newBrowserRun(t)
	rep, err := runFlow(t, b, mustParse(t, `name: staging smoke
steps:
  - goto: http://app.internal.example/
  - expect_text: "Hello from the private app"
  - fill: {selector: "#q", value: "hi there"}
  - click: "#go"
  - expect_text: "You searched for hi there"
  - screenshot: shots/result.png
`))
	if err != nil {
		t.Fatalf("flow failed: %v\nreport: %+v", err, rep)
	}
	if rep.Status != "passed" || len(rep.Steps) != 6 {
		t.Fatalf("report = %+v", rep)
	}
	for _, s := range rep.Steps {
		if s.Status != "passed" {
			t.Errorf("step %d %s: %s %s", s.Index, s.Step, s.Status, s.Error)
		}
	}

	// The screenshot is a real PNG of the browser window.
	if !slices.Equal(rep.Screenshots, []string{filepath.Join("shots", "result.png")}) {
		t.Fatalf("screenshots = %v", rep.Screenshots)
	}
	fh, err := os.Open(filepath.Join(b.opts.OutDir, rep.Screenshots[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	img, err := png.Decode(fh)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if sz := img.Bounds().Size(); sz.X < 800 || sz.Y < 500 {
		t.Errorf("screenshot is %v; want the 1280x800 window", sz)
	}

	// Chromium did not resolve the name itself: the tailnet resolver saw it
	// and the proxy dialled the tailnet address.
	if !slices.Contains(b.tailnet.Lookups(), "app.internal.example") {
		t.Errorf("tailnet lookups = %v; want app.internal.example", b.tailnet.Lookups())
	}
	var sawResolved bool
	for _, ev := range b.proxy.Events() {
		if ev.Host == "app.internal.example" && ev.Resolved == netip.MustParseAddr("100.64.0.5") && !ev.Refused {
			sawResolved = true
		}
	}
	checkAttributed(t, b, rep)
	if !sawResolved {
		t.Errorf("proxy events %+v; want app.internal.example resolved to 100.64.0.5", b.proxy.Events())
	}

	// Per-request diagnostics from Chromium.
	var doc *browser.Request
	for i, r := range rep.Requests {
		if r.Host == "app.internal.example" && r.Type == "Document" && strings.HasSuffix(r.URL, "/search") {
			doc = &rep.Requests[i]
		}
	}
	if doc == nil || doc.Status != 200 || doc.Bytes == 0 || doc.Port != 80 || strings.Contains(doc.URL, "?") {
		t.Errorf("search request diagnostics = %+v (all: %+v)", doc, rep.Requests)
	}

	// report.json is written next to the screenshots.
	raw, err := os.ReadFile(filepath.Join(b.opts.OutDir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk browser.Report
	if err := json.Unmarshal(raw, &onDisk); err != nil || onDisk.Status != "passed" || len(onDisk.Requests) == 0 {
		t.Errorf("report.json = %s (%v)", raw, err)
	}
	if strings.Contains(string(raw), "hi there") && strings.Contains(string(raw), `"value"`) {
		t.Errorf("report.json carries a filled value: %s", raw)
	}
}

func TestFlowToNonTargetHostFailsWithProxyRefusal(t *testing.T) {
	b := newBrowserRun(t)
	rep, err := runFlow(t, b, mustParse(t, `name: escape attempt
steps:
  - goto: http://example.com/
  - screenshot: never.png
`))
	if err == nil {
		t.Fatalf("flow to example.com passed: %+v", rep)
	}
	if len(rep.Steps) != 2 || rep.Status != "failed" || rep.Steps[0].Status != "failed" || rep.Steps[1].Status != "skipped" {
		t.Fatalf("report = %+v", rep)
	}
	msg := rep.Steps[0].Error
	if !strings.Contains(msg, "not_a_target") || !strings.Contains(msg, "example.com:80 is not a target of this environment") {
		t.Errorf("step error %q; want the proxy's reason", msg)
	}
	var refused bool
	for _, r := range rep.Requests {
		if r.Host == "example.com" && r.Status == 403 && r.Refusal == "not_a_target" {
			refused = true
		}
	}
	if !refused {
		t.Errorf("requests %+v; want example.com refused with not_a_target", rep.Requests)
	}

	// HTTPS goes through CONNECT; the refusal shows as a tunnel failure in
	// Chromium and as the reason in the proxy's events.
	rep, err = runFlow(t, b, mustParse(t, "steps:\n  - goto: https://example.com/\n"))
	if len(rep.Steps) != 1 {
		t.Fatalf("https flow did not run its step: %v", err)
	}
	if err == nil || !strings.Contains(rep.Steps[0].Error, "ERR_TUNNEL_CONNECTION_FAILED") {
		t.Errorf("https flow: err %v, step %+v", err, rep.Steps)
	}
	var connectRefused bool
	for _, ev := range b.proxy.Events() {
		if ev.Host == "example.com" && ev.Protocol == egress.ProtocolConnect && ev.Reason == egress.ReasonNotATarget {
			connectRefused = true
		}
	}
	if !connectRefused {
		t.Errorf("proxy events %+v; want a refused CONNECT to example.com", b.proxy.Events())
	}
	if slices.Contains(b.tailnet.Lookups(), "example.com") {
		t.Error("the refused public name was resolved")
	}
}

func TestFlowFailsClearlyWhenExpectedTextIsMissing(t *testing.T) {
	b := newBrowserRun(t)
	b.opts.StepTimeout = 2 * time.Second
	rep, err := runFlow(t, b, mustParse(t, `name: wrong text
steps:
  - goto: http://app.internal.example/
  - expect_text: "Goodbye"
  - click: "#go"
`))
	if err == nil {
		t.Fatal("flow passed without the expected text")
	}
	want := `expected text "Goodbye" did not appear on http://app.internal.example/; the page shows: "Hello from the private app`
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "step 2 (line 4") {
		t.Errorf("error %q; want it to contain %q and the step", err, want)
	}
	if len(rep.Steps) != 3 {
		t.Fatalf("steps = %+v", rep.Steps)
	}
	if got := []string{rep.Steps[0].Status, rep.Steps[1].Status, rep.Steps[2].Status}; !slices.Equal(got, []string{"passed", "failed", "skipped"}) {
		t.Errorf("step statuses %v", got)
	}
}

func TestRunRejectsProxyThatIsNotLoopbackIP(t *testing.T) {
	f := mustParse(t, "steps:\n  - goto: http://app.internal.example/\n")
	for _, p := range []string{"", "http://localhost:3128", "http://192.0.2.1:3128", "ftp://127.0.0.1:21", "127.0.0.1:3128"} {
		_, err := browser.Run(context.Background(), f, browser.Options{ProxyURL: p, OutDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "proxy URL") {
			t.Errorf("ProxyURL %q: err %v; want a proxy URL error", p, err)
		}
	}
}

func TestRunReportsMissingChromium(t *testing.T) {
	f := mustParse(t, "steps:\n  - goto: http://app.internal.example/\n")
	out := t.TempDir()
	rep, err := browser.Run(context.Background(), f, browser.Options{
		ProxyURL:     "http://127.0.0.1:9",
		OutDir:       out,
		ChromiumPath: filepath.Join(t.TempDir(), "no-such-chromium"),
	})
	if err == nil || !strings.Contains(err.Error(), "start chromium") {
		t.Fatalf("err %v; want a start chromium error", err)
	}
	if rep.Status != "failed" {
		t.Errorf("report status %q", rep.Status)
	}
	if _, err := os.Stat(filepath.Join(out, "report.json")); err != nil {
		t.Errorf("no report.json after a failed start: %v", err)
	}
}
