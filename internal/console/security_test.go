package console

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

func TestCrossSiteFormPostIsRefused(t *testing.T) {
	s := newStack(t, false)
	c := s.client(t)
	tok := c.signIn(s.admin)
	form := url.Values{"csrf": {tok}, "name": {"evil"}}

	// A form another site posts: the browser says so in Sec-Fetch-Site
	// and Origin, and cannot know the CSRF token.
	p := c.post("/console/environments", form, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "another site") {
		t.Errorf("cross-site post with a valid token: %d %.300s", p.status, p.body)
	}
	p = c.post("/console/environments", url.Values{"name": {"evil"}})
	if p.status != http.StatusForbidden {
		t.Errorf("post without a CSRF token: %d", p.status)
	}
	p = c.post("/console/environments", url.Values{"csrf": {"forged"}, "name": {"evil"}})
	if p.status != http.StatusForbidden {
		t.Errorf("post with a forged CSRF token: %d", p.status)
	}
	// Signing in is a form too: a site must not sign a browser in as
	// someone else.
	other := s.client(t)
	p = other.post("/console/signin", url.Values{"token": {s.admin}})
	if p.status != http.StatusForbidden {
		t.Errorf("sign-in post without its CSRF cookie: %d", p.status)
	}
	if p := c.get("/console/"); strings.Contains(p.body, "evil") {
		t.Errorf("a refused post created an environment")
	}
	// The same form from the console itself goes through.
	p = c.post("/console/environments", form, "Origin", s.srv.URL, "Sec-Fetch-Site", "same-origin")
	if p.status != 200 || p.url != "/console/environments/evil" {
		t.Errorf("same-origin post: %d at %s", p.status, p.url)
	}
}

func TestSessionCookieIsHttpOnlyStrictAndSecureOverTLS(t *testing.T) {
	for _, tls := range []bool{false, true} {
		s := newStack(t, tls)
		c := s.client(t)
		c.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		p := c.get("/console/signin")
		req, _ := http.NewRequest("POST", c.base+"/console/signin", strings.NewReader(url.Values{"csrf": {csrf(t, p)}, "token": {s.admin}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var got *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == sessionCookie && ck.Value != "" {
				got = ck
			}
		}
		if got == nil {
			t.Fatalf("tls=%v: no session cookie: %d %v", tls, resp.StatusCode, resp.Header)
		}
		if !got.HttpOnly || got.SameSite != http.SameSiteStrictMode || got.Secure != tls || got.Path != "/" {
			t.Errorf("tls=%v: session cookie %s: want HttpOnly, SameSite=Strict, Secure=%v", tls, got.String(), tls)
		}
		if strings.Contains(got.Value, s.admin) || strings.Contains(resp.Header.Get("Set-Cookie"), "tg_") {
			t.Errorf("tls=%v: the API token is in a cookie", tls)
		}
	}
}

var (
	inlineScript  = regexp.MustCompile(`(?is)<script(?:[^>]*)>\s*[^<\s]`)
	scriptTag     = regexp.MustCompile(`(?is)<script[^>]*>`)
	eventHandler  = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	inlineStyle   = regexp.MustCompile(`(?i)<style|\sstyle\s*=`)
	javascriptURL = regexp.MustCompile(`(?i)javascript:`)
)

func TestEveryPageHasAStrictCSPAndNoInlineScript(t *testing.T) {
	s := newStack(t, false)
	c := s.client(t)
	pages := []answer{c.get("/console/signin")}
	tok := c.signIn(s.admin)
	c.post("/console/environments", url.Values{"csrf": {tok}, "name": {"csp"}})
	for _, path := range []string{"/console/", "/console/environments/csp", "/console/runs", "/console/tokens", "/console/nowhere", "/console/environments/csp/disconnect"} {
		pages = append(pages, c.get(path))
	}
	for _, p := range pages {
		csp := p.header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %s", p.url, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP allows inline code: %q", p.url, csp)
		}
		if p.header.Get("X-Frame-Options") != "DENY" || p.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: X-Frame-Options %q, X-Content-Type-Options %q", p.url, p.header.Get("X-Frame-Options"), p.header.Get("X-Content-Type-Options"))
		}
		for what, re := range map[string]*regexp.Regexp{"inline script": inlineScript, "event handler attribute": eventHandler, "inline style": inlineStyle, "javascript: URL": javascriptURL} {
			if m := re.FindString(p.body); m != "" {
				t.Errorf("%s: %s: %q", p.url, what, m)
			}
		}
		for _, tag := range scriptTag.FindAllString(p.body, -1) {
			if !strings.Contains(tag, `src="/console/static/`) {
				t.Errorf("%s: a script not from the console's files: %q", p.url, tag)
			}
		}
		// Every form that posts carries a CSRF token.
		forms := strings.Count(p.body, `method="post"`)
		if n := strings.Count(p.body, `name="csrf"`); n < forms {
			t.Errorf("%s: %d forms post, %d carry a CSRF token", p.url, forms, n)
		}
	}
}

func TestScriptInANameOrTargetRendersInert(t *testing.T) {
	s := newStack(t, false)
	c := s.client(t)
	tok := c.signIn(s.admin)
	p := c.post("/console/environments", url.Values{"csrf": {tok}, "name": {"<script>alert(1)</script>"}})
	if !strings.Contains(p.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the refused name is not shown escaped: %.2000s", p.body)
	}
	c.post("/console/environments", url.Values{"csrf": {tok}, "name": {"xss"}})
	target := `<script>alert(2)</script>:80`
	p = c.post("/console/environments/xss/connect", url.Values{"csrf": {tok}, "targets": {target + "\n" + sandbox.DemoAppName + `:80"><img src=x onerror=alert(3)>`}, "control": {"tailscale"}, "api_token": {s.sb.NewAPIToken()}})
	if !strings.Contains(p.body, "&lt;script&gt;alert(2)&lt;/script&gt;") {
		t.Errorf("the refused target is not shown escaped: %.3000s", p.body)
	}
	for _, p := range []answer{p, c.get("/console/"), c.get("/console/environments/xss")} {
		if strings.Contains(p.body, "<script>alert") || strings.Contains(p.body, "<img src=x") {
			t.Errorf("%s: markup from input is live: %.3000s", p.url, p.body)
		}
	}
}

func TestRunnerSessionCannotReachAdminActions(t *testing.T) {
	s := newStack(t, false)
	admin := s.client(t)
	atok := admin.signIn(s.admin)
	admin.post("/console/environments", url.Values{"csrf": {atok}, "name": {"staging"}})

	c := s.client(t)
	tok := c.signIn(s.runner)
	p := c.get("/console/environments/staging")
	if p.status != 200 || strings.Contains(p.body, `action="/console/environments/staging/connect"`) {
		t.Errorf("a runner is offered the connect form: %d", p.status)
	}
	posts := map[string]url.Values{
		"/console/environments":                    {"name": {"mine"}},
		"/console/environments/staging/connect":    {"targets": {sandbox.DemoAppName + ":80"}, "api_token": {s.sb.NewAPIToken()}},
		"/console/environments/staging/verify":     nil,
		"/console/environments/staging/disconnect": {"confirm": {"yes"}, "api_token": {s.sb.NewAPIToken()}},
		"/console/environments/staging/delete":     nil,
		"/console/tokens":                          {"name": {"escalate"}},
	}
	for path, form := range posts {
		if form == nil {
			form = url.Values{}
		}
		form.Set("csrf", tok)
		p := c.post(path, form)
		if !strings.Contains(p.body, "role admin") || !strings.Contains(p.body, "Not allowed with this token") {
			t.Errorf("runner POST %s: %d, no clear refusal: %.1500s", path, p.status, p.body)
		}
	}
	if p := c.get("/console/tokens"); p.status != http.StatusForbidden || !strings.Contains(p.body, "role admin") {
		t.Errorf("runner token list: %d", p.status)
	}
	if p := c.get("/console/runs"); p.status != 200 {
		t.Errorf("runner runs list: %d", p.status)
	}
	// Nothing changed.
	p = admin.get("/console/")
	if strings.Contains(p.body, "mine") || !strings.Contains(p.body, "staging") {
		t.Errorf("a runner's posts changed the environments: %.2000s", p.body)
	}
	if p := admin.get("/console/tokens"); strings.Contains(p.body, "escalate") {
		t.Errorf("a runner created a token")
	}
}

func TestAnotherOrgsEnvironmentIsNotFound(t *testing.T) {
	s := newStack(t, false)
	a := s.client(t)
	tok := a.signIn(s.admin)
	a.post("/console/environments", url.Values{"csrf": {tok}, "name": {"private"}})

	b := s.client(t)
	btok := b.signIn(s.other)
	for _, path := range []string{"/console/environments/private", "/console/environments/private/disconnect"} {
		if p := b.get(path); p.status != http.StatusNotFound {
			t.Errorf("other org GET %s: %d", path, p.status)
		}
	}
	p := b.post("/console/environments/private/verify", url.Values{"csrf": {btok}})
	if strings.Contains(p.body, "private network") && !strings.Contains(p.body, "not found") {
		t.Errorf("other org verify: %d %.1000s", p.status, p.body)
	}
	if p := b.get("/console/"); strings.Contains(p.body, "private</a>") {
		t.Errorf("other org lists the environment")
	}
}

func TestSignedOutSessionIsRefused(t *testing.T) {
	s := newStack(t, false)
	c := s.client(t)
	tok := c.signIn(s.admin)
	u, _ := url.Parse(s.srv.URL)
	old := c.c.Jar.Cookies(u)
	p := c.post("/console/signout", url.Values{"csrf": {tok}})
	if p.url != "/console/signin" || !strings.Contains(p.body, "signed out") {
		t.Errorf("sign out: %d at %s", p.status, p.url)
	}
	// Replaying the old cookie does not bring the session back.
	c.c.Jar.SetCookies(u, old)
	if p := c.get("/console/runs"); p.url != "/console/signin" {
		t.Errorf("after sign out, /console/runs: %d at %s", p.status, p.url)
	}
	if p := c.post("/console/environments", url.Values{"csrf": {tok}, "name": {"late"}}); p.status != http.StatusUnauthorized {
		t.Errorf("after sign out, a post: %d", p.status)
	}
}

func TestAPIStillAnswersBehindTheConsole(t *testing.T) {
	s := newStack(t, false)
	c := s.client(t)
	req, _ := http.NewRequest("GET", c.base+"/v1/environments", nil)
	if p := c.do(req); p.status != http.StatusUnauthorized || !strings.Contains(p.body, `"unauthenticated"`) {
		t.Errorf("/v1 without a token: %d %s", p.status, p.body)
	}
	if p := c.get("/healthz"); p.status != 200 {
		t.Errorf("/healthz: %d", p.status)
	}
	if p := c.get("/"); p.url != "/console/signin" {
		t.Errorf("/ leads to %s", p.url)
	}
}
