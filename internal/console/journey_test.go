package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/testhttp"
)

// chromiumPath is Debian's Chromium, which CI installs.
const chromiumPath = "/usr/bin/chromium"

// shotsDir is where the journey saves its screenshots:
// $TAILGATE_CONSOLE_SHOTS, or the test's temporary directory.
func shotsDir(t *testing.T) string {
	if d := os.Getenv("TAILGATE_CONSOLE_SHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestConsoleJourneyInChromium walks the console in headless Chromium
// against the sandbox tailnet: sign in, create an environment, connect
// four targets, verify, watch a run's network report, disconnect, sign
// out.
func TestConsoleJourneyInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("headless Chromium is not installed at %s (apt-get install chromium); the console journey needs it", chromiumPath)
	}
	s := newStack(t, false)
	shots := shotsDir(t)
	t.Logf("screenshots: %s", shots)

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
		chromedp.Flag("no-sandbox", os.Geteuid() == 0),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	defer cancelTimeout()

	fail := func(what string, err error) {
		t.Helper()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(sctx, chromedp.Location())
		body, _ := chromedp.Run(sctx, chromedp.Text(chromedp.CSS("main")))
		t.Fatalf("%s: %v (at %s: %.1500s)", what, err, loc, body)
	}
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			fail(what, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			fail("screenshot "+name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			fail("read "+sel, err)
		}
		return s
	}

	// Sign in.
	run("open the console", chromedp.Navigate(s.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	shot("1-sign-in")
	run("sign in",
		chromedp.SendKeys(chromedp.CSS("#token"), s.admin),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#name")))

	// Create an environment.
	run("create staging",
		chromedp.SendKeys(chromedp.CSS("#name"), "staging"),
		chromedp.Submit(chromedp.CSS("#name")),
		chromedp.WaitVisible(chromedp.CSS("#targets")))

	// Connect: an internal name, a device name, an approved subnet IP and
	// one behind the route nobody approved.
	apiToken := s.sb.NewAPIToken()
	targets := []string{
		sandbox.DemoAppName + ":80",
		sandbox.DeviceName + ":80",
		sandbox.DemoAppIP.String() + ":80",
		sandbox.LegacyAppIP.String() + ":80",
	}
	run("connect",
		chromedp.SetValue(chromedp.CSS("#targets"), strings.Join(targets, "\n")),
		chromedp.SendKeys(chromedp.CSS("#api_token"), apiToken),
		chromedp.Click(chromedp.CSS(`#connect button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#result")))
	warnings := text("#warnings")
	if !strings.Contains(warnings, "Broad grant") || !strings.Contains(warnings, sandbox.ApprovedSubnet.String()) {
		t.Errorf("the DNS-breadth warning is not shown prominently: %q", warnings)
	}
	if !strings.Contains(warnings, "not approved") || !strings.Contains(warnings, sandbox.LegacyAppIP.String()) {
		t.Errorf("no unapproved-route warning: %q", warnings)
	}
	if res := text("#result"); !strings.Contains(res, "dns-name") || !strings.Contains(res, "device-name") || !strings.Contains(res, "private-ip") {
		t.Errorf("the connect result lacks the targets' kinds: %q", res)
	}
	shot("2-connected")

	// The one-time API token is nowhere the browser keeps anything.
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		fail("page HTML", err)
	}
	inputs, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll('input,textarea')).map(e => e.value).join('\n')`))
	if err != nil {
		fail("form fields", err)
	}
	storage, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])`))
	if err != nil {
		fail("storage", err)
	}
	jar, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		fail("cookies", err)
	}
	cookies := jar.Cookies
	for what, v := range map[string]string{"page HTML": html, "form fields": inputs, "storage": storage} {
		if strings.Contains(v, apiToken) || strings.Contains(v, s.admin) {
			t.Errorf("a token is in the %s after connect", what)
		}
	}
	for _, ck := range cookies {
		if strings.Contains(ck.Value, apiToken) || strings.Contains(ck.Value, s.admin) {
			t.Errorf("cookie %s holds a token", ck.Name)
		}
		if ck.Name == sessionCookie && (!ck.HTTPOnly || ck.SameSite != network.CookieSameSiteStrict) {
			t.Errorf("session cookie as the browser has it: HttpOnly %v SameSite %v", ck.HTTPOnly, ck.SameSite)
		}
	}

	// Verify: three reachable, one route not approved, with its hint.
	run("verify",
		chromedp.Click(chromedp.CSS(`#verification button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#verification table.verdicts`)))
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]map[string]string](`Array.from(document.querySelectorAll('#verification tbody tr')).map(tr => ({
		target: tr.querySelector('th').innerText, verdict: tr.cells[1].innerText, hint: tr.cells[tr.cells.length-1].innerText}))`))
	if err != nil {
		fail("read verdicts", err)
	}
	reachable, notRouted := 0, 0
	for _, r := range rows {
		switch {
		case r["verdict"] == "reachable":
			reachable++
		case r["verdict"] == "route not approved" && strings.Contains(r["target"], sandbox.LegacyAppIP.String()):
			notRouted++
			if len(r["hint"]) < 20 {
				t.Errorf("no hint for the unapproved route: %v", r)
			}
		}
	}
	if reachable != 3 || notRouted != 1 {
		t.Errorf("verdicts %v: want 3 reachable and %s route not approved", rows, sandbox.LegacyAppIP)
	}
	shot("3-verified")

	// A run, started through the API as the CLI does, and a request
	// through its proxy: one to a target, one to a host that is not.
	proxyURL, runID := startRun(t, s)
	fetchThrough(t, proxyURL, "http://"+sandbox.DemoAppName+"/")
	fetchThrough(t, proxyURL, "http://example.com/")
	run("runs list", chromedp.Navigate(s.srv.URL+"/console/runs"), chromedp.WaitVisible(chromedp.CSS("table")))
	if list := text("main"); !strings.Contains(list, runID) || !strings.Contains(list, "ready") {
		t.Errorf("the runs list lacks the open run %s: %q", runID, list)
	}
	shot("4-runs")
	run("run page", chromedp.Click(chromedp.CSS(`a[href="/console/runs/`+runID+`"]`)), chromedp.WaitVisible(chromedp.CSS("#network table")))
	report := text("#network")
	for _, want := range []string{sandbox.DemoAppName + ":80", sandbox.DemoAppIP.String(), "HTTP 200", "example.com:80", "refused"} {
		if !strings.Contains(report, want) {
			t.Errorf("the network report lacks %q: %q", want, report)
		}
	}
	shot("5-run")
	run("end the run", chromedp.Click(chromedp.CSS(`form[action$="/end"] button`)), chromedp.WaitVisible(chromedp.CSS(`.badge-run-ended`)))

	// A phone-sized look at the environment.
	run("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(s.srv.URL+"/console/environments/staging"), chromedp.WaitVisible(chromedp.CSS("h1")))
	shot("6-phone")
	run("desktop", chromedp.EmulateViewport(1200, 900))

	// Disconnect, with its confirmation.
	run("disconnect",
		chromedp.Navigate(s.srv.URL+"/console/environments/staging"),
		chromedp.Click(chromedp.CSS(`a[href$="/disconnect"]`)),
		chromedp.WaitVisible(chromedp.CSS("#api_token")),
		chromedp.SendKeys(chromedp.CSS("#api_token"), s.sb.NewAPIToken()),
		chromedp.Click(chromedp.CSS(`input[name=confirm]`)),
		chromedp.Click(chromedp.CSS(`button.danger`)),
		chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	if n := text(".notice"); !strings.Contains(n, "Disconnected") {
		t.Errorf("after disconnect: %q", n)
	}
	if b := text("h1"); !strings.Contains(b, "not connected") {
		t.Errorf("the badge after disconnect: %q", b)
	}

	// Sign out, and be refused.
	run("sign out", chromedp.Click(chromedp.CSS(`form.signout button`)), chromedp.WaitVisible(chromedp.CSS("#token")))
	run("after sign out", chromedp.Navigate(s.srv.URL+"/console/runs"), chromedp.WaitVisible(chromedp.CSS("#token")))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if !strings.Contains(loc, "/console/signin") {
		t.Errorf("after sign out, /console/runs is at %s", loc)
	}
}

// startRun starts a run of staging through the API, as tailgate run does.
func startRun(t *testing.T, s *stack) (proxyURL, id string) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.srv.URL+"/v1/environments/staging/runs", nil)
	req.Header.Set("Authorization", "Bearer "+s.runner)
	resp, b := testhttp.Do(t, s.srv.Client(), req)
	var r struct {
		ID       string `json:"id"`
		ProxyURL string `json:"proxy_url"`
	}
	if resp.StatusCode != 201 || json.Unmarshal(b, &r) != nil {
		t.Fatalf("start run: %d %s", resp.StatusCode, b)
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", s.srv.URL+"/v1/runs/"+r.ID, nil)
		req.Header.Set("Authorization", "Bearer "+s.runner)
		if resp, err := s.srv.Client().Do(req); err == nil {
			resp.Body.Close()
		}
	})
	return r.ProxyURL, r.ID
}

// fetchThrough sends one GET through a run's proxy; a refusal is fine.
func fetchThrough(t *testing.T, proxyURL, target string) {
	t.Helper()
	resp, err := testhttp.ThroughProxy(t, proxyURL).Get(target)
	if err != nil {
		t.Logf("GET %s through the run: %v", target, err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	t.Logf("GET %s through the run: %s", target, fmt.Sprint(resp.StatusCode))
}
