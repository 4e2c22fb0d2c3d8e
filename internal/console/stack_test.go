package console

import (
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/tailgatetest"
	"github.com/tailgate-dev/tailgate/internal/testhttp"

	"github.com/tailgate-dev/tailgate/internal/api"
	tgrun "github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// stack is the tailgate API over the sandbox tailnet, as serve runs it,
// with the console in front, and tokens of two orgs.
type stack struct {
	sb     *sandbox.Sandbox
	srv    *httptest.Server
	org    string
	admin  string // admin of org acme
	runner string // runner of org acme
	other  string // admin of org other
}

func newStack(t *testing.T, tls bool) *stack {
	t.Helper()
	ts := tailgatetest.New(t, sandboxtest.Shared(t))
	st, svc := ts.Store, ts.Connect
	s := &stack{sb: ts.Sandbox, org: ts.Org, admin: ts.Admin, runner: ts.Runner, other: ts.OtherAdmin}
	runs := &tgrun.Manager{Connect: svc, Store: st}
	t.Cleanup(runs.Close)
	h := Wrap(api.New(api.Options{Store: st, PrivateNetwork: svc, Runs: runs}), Options{})
	if tls {
		s.srv = httptest.NewTLSServer(h)
	} else {
		s.srv = httptest.NewServer(h)
	}
	t.Cleanup(s.srv.Close)
	return s
}

// client is a browser without JavaScript: a cookie jar over HTTP.
type client struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (s *stack) client(t *testing.T) *client {
	jar, _ := cookiejar.New(nil)
	hc := *s.srv.Client() // a copy: each client has its own jar
	hc.Jar = jar
	return &client{t: t, base: s.srv.URL, c: &hc}
}

type answer struct {
	status int
	header http.Header
	body   string
	url    string
}

func (c *client) do(req *http.Request) answer {
	c.t.Helper()
	resp, b := testhttp.Do(c.t, c.c, req)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b), url: resp.Request.URL.Path}
}

func (c *client) get(path string) answer {
	c.t.Helper()
	req, _ := http.NewRequest("GET", c.base+path, nil)
	return c.do(req)
}

// post sends a form; extra headers are name, value pairs.
func (c *client) post(path string, form url.Values, headers ...string) answer {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return c.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the first form on a page.
func csrf(t *testing.T, p answer) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF token on %s (%d): %.400s", p.url, p.status, p.body)
	}
	return m[1]
}

// signIn signs in with token and returns the session's CSRF token.
func (c *client) signIn(token string) string {
	c.t.Helper()
	p := c.get("/console/signin")
	p = c.post("/console/signin", url.Values{"csrf": {csrf(c.t, p)}, "token": {token}, "next": {"/console/"}})
	if p.status != 200 || p.url != "/console/" {
		c.t.Fatalf("sign in: %d at %s: %.400s", p.status, p.url, p.body)
	}
	return csrf(c.t, p)
}
