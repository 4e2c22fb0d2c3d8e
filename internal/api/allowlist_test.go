package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/allowlist"
	"github.com/tailgate-dev/tailgate/internal/errcode"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/testclock"
	"github.com/tailgate-dev/tailgate/internal/testhttp"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

// allowlistHarness is the harness's API with a Network Allowlist whose
// reporting org is org A, and a settable clock.
type allowlistHarness struct {
	*harness
	al    *allowlist.Service
	clock *testclock.Clock
}

func newAllowlistHarness(t *testing.T, needsToken bool) *allowlistHarness {
	t.Helper()
	h := newHarness(t)
	kr, err := vault.NewKeyring(bytes.Repeat([]byte{7}, vault.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	ah := &allowlistHarness{harness: h, clock: testclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))}
	ah.al = &allowlist.Service{Store: h.st, Vault: kr, AnnounceAhead: 24 * time.Hour, ReportOrgs: []string{h.orgA},
		Outbound: outbound.AllowLoopback(), RetryMin: time.Millisecond, Now: ah.clock.Now}
	h.srv.Close()
	h.srv = httptest.NewServer(New(Options{Store: h.st, PrivateNetwork: h.net, Allowlist: ah.al, AllowlistNeedsToken: needsToken}))
	t.Cleanup(h.srv.Close)
	return ah
}

func (ah *allowlistHarness) configure(ips ...string) {
	ah.t.Helper()
	var addrs []netip.Addr
	for _, ip := range ips {
		addrs = append(addrs, netip.MustParseAddr(ip))
	}
	if _, err := ah.al.Configure(context.Background(), addrs); err != nil {
		ah.t.Fatal(err)
	}
}

// get sends a GET with extra headers.
func (ah *allowlistHarness) get(path, token string, header ...string) answer {
	ah.t.Helper()
	req, _ := http.NewRequest("GET", ah.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, body := testhttp.Do(ah.t, nil, req)
	return answer{status: resp.StatusCode, header: resp.Header, body: body}
}

func TestAllowlistIsPublicCacheableAndAnswers304UntilItChanges(t *testing.T) {
	ah := newAllowlistHarness(t, false)
	ah.configure("203.0.113.7", "2001:db8::7")
	a := ah.get("/v1/network/allowlist", "")
	ah.mustStatus(a, 200, "public allowlist")
	var l allowlist.List
	if err := json.Unmarshal(a.body, &l); err != nil || strings.Join(l.IPs, ",") != "203.0.113.7,2001:db8::7" {
		t.Fatalf("list = %s (%v)", a.body, err)
	}
	etag := a.header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") || len(etag) < 10 {
		t.Errorf("ETag = %q, want a strong validator", etag)
	}
	if cc := a.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=300") || !strings.Contains(cc, "public") {
		t.Errorf("Cache-Control = %q", cc)
	}
	// Same list: same ETag, and If-None-Match answers 304 without a body.
	b := ah.get("/v1/network/allowlist", "", "If-None-Match", etag)
	if b.status != 304 || len(b.body) != 0 || b.header.Get("ETag") != etag || !strings.Contains(b.header.Get("Cache-Control"), "max-age=300") {
		t.Errorf("If-None-Match current = %d %q ETag=%q", b.status, b.body, b.header.Get("ETag"))
	}
	for _, inm := range []string{`"other", ` + etag, "W/" + etag, "*"} {
		if c := ah.get("/v1/network/allowlist", "", "If-None-Match", inm); c.status != 304 {
			t.Errorf("If-None-Match %s = %d, want 304", inm, c.status)
		}
	}
	if c := ah.get("/v1/network/allowlist", "", "If-None-Match", `"stale"`); c.status != 200 {
		t.Errorf("If-None-Match stale = %d, want 200", c.status)
	}
	// A change: new ETag, and the old one no longer matches.
	ah.configure("203.0.113.7", "2001:db8::7", "198.51.100.9")
	c := ah.get("/v1/network/allowlist", "", "If-None-Match", etag)
	if c.status != 200 || c.header.Get("ETag") == etag {
		t.Fatalf("after a change: %d ETag %q (was %q)", c.status, c.header.Get("ETag"), etag)
	}
	etag2 := c.header.Get("ETag")
	// Time passing changes it too, once the announced address is in use.
	ah.clock.Advance(24 * time.Hour)
	d := ah.get("/v1/network/allowlist", "", "If-None-Match", etag2)
	if d.status != 200 || d.header.Get("ETag") == etag2 || !strings.Contains(string(d.body), `"198.51.100.9"`) {
		t.Errorf("after activation: %d ETag %q: %s", d.status, d.header.Get("ETag"), d.body)
	}
	// HEAD works too.
	req, _ := http.NewRequest("HEAD", ah.srv.URL+"/v1/network/allowlist", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == "" {
		t.Errorf("HEAD = %d ETag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
}

func TestAllowlistCanRequireAToken(t *testing.T) {
	ah := newAllowlistHarness(t, true)
	ah.configure("203.0.113.7")
	for _, p := range []string{"/v1/network/allowlist", "/v1/network/allowlist/changes"} {
		if a := ah.get(p, ""); a.status != 401 || a.err().Code != errcode.Unauthenticated {
			t.Errorf("%s without a token = %d %s", p, a.status, a.body)
		}
		ah.mustStatus(ah.get(p, ah.runnerA), 200, p+" with a runner token")
		ah.mustStatus(ah.get(p, ah.adminB), 200, p+" with another org's token")
	}
	a := ah.get("/v1/network/allowlist", ah.runnerA)
	if cc := a.header.Get("Cache-Control"); !strings.Contains(cc, "private") || !strings.Contains(cc, "max-age=300") || a.header.Get("Vary") != "Authorization" {
		t.Errorf("token-only list: Cache-Control %q Vary %q", cc, a.header.Get("Vary"))
	}
}

func TestAllowlistChangeFeedPagesWithCursorsAndRefusesBadOnes(t *testing.T) {
	ah := newAllowlistHarness(t, false)
	ah.configure("203.0.113.1")
	ah.clock.Advance(time.Hour)
	ah.configure("203.0.113.2")
	ah.clock.Advance(time.Hour)
	ah.configure("203.0.113.2", "203.0.113.3")
	feed, _ := allowlist.ReadFeed("0", 7, func(since string) (allowlist.ChangePage, error) {
		a := ah.get("/v1/network/allowlist/changes?limit=2&since="+since, "")
		ah.mustStatus(a, 200, "changes")
		var p allowlist.ChangePage
		json.Unmarshal(a.body, &p)
		return p, nil
	})
	if feed.More {
		t.Fatal("pages do not end")
	}
	var seq []string
	for _, c := range feed.Changes {
		seq = append(seq, string(c.Change)+" "+c.IP+" +"+c.EffectiveAt.Sub(c.AnnouncedAt).String())
	}
	want := "add 203.0.113.1 +0s|add 203.0.113.2 +24h0m0s|retire 203.0.113.1 +24h0m0s|add 203.0.113.3 +24h0m0s"
	if strings.Join(seq, "|") != want {
		t.Errorf("feed = %s\nwant   %s", strings.Join(seq, "|"), want)
	}
	var l allowlist.List
	json.Unmarshal(ah.get("/v1/network/allowlist", "").body, &l)
	if l.Cursor != feed.Cursor {
		t.Errorf("allowlist cursor %s, feed end %s", l.Cursor, feed.Cursor)
	}
	for _, q := range []string{"since=abc", "since=-1", "since=007", "since=99", "since=", "limit=0", "limit=1001", "limit=x", "sinse=0", "since=1&since=2"} {
		a := ah.get("/v1/network/allowlist/changes?"+q, "")
		if a.status != 400 || a.err().Code != errcode.BadInput || a.err().Message == "" {
			t.Errorf("?%s = %d %s, want 400 bad_input", q, a.status, a.body)
		}
	}
	if a := ah.get("/v1/network/allowlist/changes?since=abc", ""); !strings.Contains(a.err().Message, "cursor") {
		t.Errorf("bad cursor message = %q, want it to say what a cursor is", a.err().Message)
	}
	if a := ah.get("/v1/network/allowlist?x=1", ""); a.status != 400 {
		t.Errorf("allowlist with an unknown parameter = %d", a.status)
	}
}

func TestEgressReportsAreStrictAndOnlyFromThePlatformsOrgs(t *testing.T) {
	ah := newAllowlistHarness(t, false)
	a := ah.do("POST", "/v1/network/egress", ah.runnerA, map[string]any{"host": "runner-1", "ips": []string{"198.51.100.7", "2001:db8::8"}})
	ah.mustStatus(a, 200, "report")
	var rep ReportedEgress
	json.Unmarshal(a.body, &rep)
	if len(rep.Entries) != 2 || rep.Entries[0].State != allowlist.Announced || !rep.Entries[0].ActiveAt.Equal(ah.clock.Now().Add(24*time.Hour)) {
		t.Errorf("report answer = %s", a.body)
	}
	if b := ah.do("POST", "/v1/network/egress", ah.adminB, map[string]any{"host": "evil", "ips": []string{"198.51.100.66"}}); b.status != 403 || b.err().Code != errcode.Forbidden {
		t.Errorf("a tenant's report = %d %s", b.status, b.body)
	}
	if b := ah.do("POST", "/v1/network/egress", "", map[string]any{"host": "x", "ips": []string{"198.51.100.66"}}); b.status != 401 {
		t.Errorf("report without a token = %d", b.status)
	}
	for name, body := range map[string]any{
		"loopback":      map[string]any{"host": "r", "ips": []string{"127.0.0.1"}},
		"private":       map[string]any{"host": "r", "ips": []string{"10.0.0.1"}},
		"link-local":    map[string]any{"host": "r", "ips": []string{"169.254.169.254"}},
		"CGNAT":         map[string]any{"host": "r", "ips": []string{"100.100.1.1"}},
		"not an IP":     map[string]any{"host": "r", "ips": []string{"runner.example.com"}},
		"a CIDR":        map[string]any{"host": "r", "ips": []string{"198.51.100.0/24"}},
		"two in one":    map[string]any{"host": "r", "ips": []string{"198.51.100.1,198.51.100.2"}},
		"twice":         map[string]any{"host": "r", "ips": []string{"198.51.100.1", "198.51.100.1"}},
		"no ips":        map[string]any{"host": "r", "ips": []string{}},
		"no host":       map[string]any{"ips": []string{"198.51.100.1"}},
		"control chars": map[string]any{"host": "r\n1", "ips": []string{"198.51.100.1"}},
	} {
		b := ah.do("POST", "/v1/network/egress", ah.runnerA, body)
		if b.status != 400 || b.err().Code != errcode.BadInput {
			t.Errorf("%s: %d %s, want 400 bad_input", name, b.status, b.body)
		}
	}
	if b := ah.do("POST", "/v1/network/egress", ah.runnerA, `{"host":"r","ips":["198.51.100.1"],"extra":1}`); b.status != 400 || b.err().Code != errcode.InvalidJSON {
		t.Errorf("unknown field: %d %s", b.status, b.body)
	}
	if b := ah.do("POST", "/v1/network/egress", ah.runnerA, `{"host":"r","ips":["198.51.100.1"]}`, "text/plain"); b.status != 415 {
		t.Errorf("text/plain: %d", b.status)
	}
	// Retire: reported addresses only, and only by the platform's orgs.
	ah.configure("203.0.113.1")
	if b := ah.do("DELETE", "/v1/network/egress/203.0.113.1", ah.runnerA, nil); b.status != 409 || b.err().Code != errcode.EgressConfigured {
		t.Errorf("retire configured = %d %s", b.status, b.body)
	}
	if b := ah.do("DELETE", "/v1/network/egress/198.51.100.99", ah.runnerA, nil); b.status != 404 {
		t.Errorf("retire unlisted = %d %s", b.status, b.body)
	}
	if b := ah.do("DELETE", "/v1/network/egress/10.0.0.1", ah.runnerA, nil); b.status != 400 {
		t.Errorf("retire private = %d %s", b.status, b.body)
	}
	if b := ah.do("DELETE", "/v1/network/egress/198.51.100.7", ah.adminB, nil); b.status != 403 {
		t.Errorf("retire by a tenant = %d %s", b.status, b.body)
	}
	b := ah.do("DELETE", "/v1/network/egress/2001:db8::8", ah.runnerA, nil)
	ah.mustStatus(b, 200, "retire")
	var e allowlist.Entry
	json.Unmarshal(b.body, &e)
	if e.RemovedAt == nil || !e.RemovedAt.Equal(ah.clock.Now().Add(24*time.Hour)) {
		t.Errorf("retired entry = %s", b.body)
	}
}

func TestAllowlistWebhookIsAdminOnlyShowsItsSecretOnceAndDelivers(t *testing.T) {
	ah := newAllowlistHarness(t, false)
	var mu sync.Mutex
	var calls int
	var body []byte
	var sig string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls <= 2 {
			http.Error(w, "receiver-private-detail", 500)
			return
		}
		body, _ = io.ReadAll(r.Body)
		sig = r.Header.Get(allowlist.SignatureHeader)
	}))
	defer recv.Close()
	const wh = "/v1/network/allowlist/webhook"
	if a := ah.do("PUT", wh, ah.runnerA, map[string]string{"url": recv.URL}); a.status != 403 {
		t.Errorf("runner sets a webhook: %d", a.status)
	}
	if a := ah.do("GET", wh, ah.adminA, nil); a.status != 404 || a.err().Code != errcode.NotFound {
		t.Errorf("no webhook yet: %d %s", a.status, a.body)
	}
	for name, body := range map[string]any{
		"no url":       map[string]string{},
		"not http":     map[string]string{"url": "ftp://127.0.0.1/"},
		"link-local":   map[string]string{"url": "http://169.254.169.254/"},
		"credentials":  map[string]string{"url": "http://u:p@127.0.0.1/"},
		"private":      map[string]string{"url": "http://10.0.0.1/"},
		"relative url": map[string]string{"url": "/hook"},
	} {
		if a := ah.do("PUT", wh, ah.adminA, body); a.status != 400 || a.err().Code != errcode.BadInput {
			t.Errorf("%s: %d %s", name, a.status, a.body)
		}
	}
	if a := ah.do("PUT", wh, ah.adminA, `{"url":"http://127.0.0.1/","secret":"mine"}`); a.status != 400 || a.err().Code != errcode.InvalidJSON {
		t.Errorf("unknown field: %d %s", a.status, a.body)
	}
	a := ah.do("PUT", wh, ah.adminA, map[string]string{"url": recv.URL + "/hook"})
	ah.mustStatus(a, 200, "set webhook")
	var created allowlist.CreatedWebhook
	json.Unmarshal(a.body, &created)
	if !strings.HasPrefix(created.Secret, allowlist.SecretPrefix) || created.URL != recv.URL+"/hook" {
		t.Fatalf("created = %s", a.body)
	}
	g := ah.do("GET", wh, ah.adminA, nil)
	ah.mustStatus(g, 200, "get webhook")
	if strings.Contains(string(g.body), created.Secret) {
		t.Error("GET shows the secret")
	}
	if b := ah.do("GET", wh, ah.adminB, nil); b.status != 404 {
		t.Errorf("another org sees the webhook: %d", b.status)
	}
	ah.configure("203.0.113.1")
	for range 3 {
		ah.al.Deliver(context.Background())
		ah.clock.Advance(time.Second)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 3 || body == nil {
		t.Fatalf("receiver calls = %d", calls)
	}
	if err := allowlist.VerifySignature(created.Secret, sig, body, ah.clock.Now(), time.Minute); err != nil {
		t.Errorf("signature: %v", err)
	}
	g = ah.do("GET", wh, ah.adminA, nil)
	if strings.Contains(string(g.body), "receiver-private-detail") {
		t.Errorf("the webhook's state repeats the receiver's body: %s", g.body)
	}
	ah.mustStatus(ah.do("DELETE", wh, ah.adminA, nil), 204, "delete webhook")
	if b := ah.do("DELETE", wh, ah.adminA, nil); b.status != 404 {
		t.Errorf("second delete: %d", b.status)
	}
}

func TestAllowlistEndpointsWithoutAnAllowlistAnswer503(t *testing.T) {
	h := newHarness(t)
	a := h.do("GET", "/v1/network/allowlist", "", nil)
	if a.status != 503 || a.err().Code != errcode.AllowlistUnavailable {
		t.Errorf("no allowlist: %d %s", a.status, a.body)
	}
}

// CreatedWebhook embeds Webhook, which the generic schema check does not
// follow: its schema must be Webhook's properties plus the secret.
func TestOpenAPICreatedWebhookIsWebhookPlusSecret(t *testing.T) {
	schemas := openAPISchemas(t)
	created, wh := schemas["CreatedWebhook"], schemas["Webhook"]
	if len(created) != len(wh)+1 || created["secret"] == nil {
		t.Errorf("CreatedWebhook has %d properties, Webhook %d (+ secret)", len(created), len(wh))
	}
	for p := range wh {
		if created[p] == nil {
			t.Errorf("CreatedWebhook lacks %q", p)
		}
	}
}
