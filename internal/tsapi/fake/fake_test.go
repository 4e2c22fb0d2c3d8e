package fake_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	tailscale "tailscale.com/client/tailscale/v2"

	"github.com/tailgate-dev/tailgate/internal/testhttp"
	"github.com/tailgate-dev/tailgate/internal/tsapi/fake"
)

type rig struct {
	api   *fake.Server
	tn    *fake.MemTailnet
	srv   *httptest.Server
	token string
	now   time.Time
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{tn: new(fake.MemTailnet), now: time.Now()}
	r.api = fake.New(fake.Options{Tailnet: r.tn, Now: func() time.Time { return r.now }})
	r.srv = httptest.NewServer(r.api)
	t.Cleanup(r.srv.Close)
	r.token = r.api.NewAPIToken(fake.TokenOptions{})
	r.tn.Add(fake.Device{
		NodeID: "nRouterCNTRL", Name: "router.example.ts.net", Hostname: "router",
		Addresses: []string{"100.64.0.1"}, Tags: []string{"tag:router"}, Ephemeral: true,
		AdvertisedRoutes: []string{"192.0.2.0/24"},
	})
	return r
}

// do sends a request with the token as Basic username (blank password).
func (r *rig) do(t *testing.T, method, path, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(r.token, "")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return testhttp.Do(t, nil, req)
}

func message(t *testing.T, b []byte) string {
	t.Helper()
	var m struct{ Message string }
	if err := json.Unmarshal(b, &m); err != nil || m.Message == "" {
		t.Fatalf("error body is not {\"message\": ...}: %s", b)
	}
	return m.Message
}

func TestPolicyIsHuJSONUnlessJSONIsAsked(t *testing.T) {
	r := newRig(t)
	resp, body := r.do(t, "GET", "/api/v2/tailnet/-/acl", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "//") || resp.Header.Get("Content-Type") != "application/hujson" {
		t.Fatalf("default GET: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) {
		t.Fatalf("ETag %q not quoted", etag)
	}
	resp, body = r.do(t, "GET", "/api/v2/tailnet/-/acl", "", map[string]string{"Accept": "application/json"})
	if !json.Valid(body) || strings.Contains(string(body), "//") || resp.Header.Get("ETag") != etag {
		t.Fatalf("JSON GET: %s (etag %q)", body, resp.Header.Get("ETag"))
	}
	// The official client's typed Get reads the same policy.
	c := &tailscale.Client{BaseURL: mustURL(t, r.srv.URL), APIKey: r.token}
	acl, err := c.PolicyFile().Get(context.Background())
	if err != nil || len(acl.Grants) != 1 || acl.ETag != etag {
		t.Fatalf("official Get: %+v %v", acl, err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestIfMatchTSDefaultMatchesOnlyTheDefaultPolicy(t *testing.T) {
	r := newRig(t)
	pol := `{"grants":[{"src":["*"],"dst":["*"],"ip":["tcp:443"]}]}`
	hdr := map[string]string{"If-Match": `"ts-default"`, "Content-Type": "application/hujson"}
	if resp, body := r.do(t, "POST", "/api/v2/tailnet/-/acl", pol, hdr); resp.StatusCode != 200 {
		t.Fatalf("first write with ts-default: %d %s", resp.StatusCode, body)
	}
	resp, body := r.do(t, "POST", "/api/v2/tailnet/-/acl", pol, hdr)
	if resp.StatusCode != http.StatusPreconditionFailed || message(t, body) != "precondition failed, invalid old hash" {
		t.Fatalf("second write with ts-default: %d %s", resp.StatusCode, body)
	}
}

func TestBasicAndBearerAuthAreAcceptedAndMissingAuthIs401(t *testing.T) {
	r := newRig(t)
	for name, set := range map[string]func(*http.Request){
		"basic":  func(req *http.Request) { req.SetBasicAuth(r.token, "") },
		"bearer": func(req *http.Request) { req.Header.Set("Authorization", "Bearer "+r.token) },
	} {
		req, _ := http.NewRequest("GET", r.srv.URL+"/api/v2/tailnet/-/devices", nil)
		set(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", name, resp.StatusCode)
		}
	}
	resp, b := testhttp.Get(t, nil, r.srv.URL+"/api/v2/tailnet/-/devices")
	if resp.StatusCode != 401 {
		t.Fatalf("no auth: %d", resp.StatusCode)
	}
	message(t, b)
}

func TestBadBodiesAre400AndUnknownThingsAre404(t *testing.T) {
	r := newRig(t)
	cases := []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/api/v2/tailnet/-/acl", `{"grants": [`, 400},
		{"POST", "/api/v2/tailnet/-/acl", `[1,2]`, 400},
		{"POST", "/api/v2/tailnet/-/keys", `{"keyType":`, 400},
		{"POST", "/api/v2/tailnet/-/keys", `{"keyType":"bogus"}`, 400},
		{"POST", "/api/v2/tailnet/-/keys", `{"capabilities":{"devices":{"create":{"tags":["tag:none"]}}},"expirySeconds":60}`, 400},
		{"POST", "/api/v2/tailnet/-/keys", `{"expirySeconds":-1}`, 400},
		{"POST", "/api/v2/tailnet/-/keys", `{"description":"` + strings.Repeat("x", 51) + `"}`, 400},
		{"POST", "/api/v2/device/nRouterCNTRL/routes", `{"routes":`, 400},
		{"POST", "/api/v2/device/nRouterCNTRL/routes", `{"routes":["192.0.2.1/24"]}`, 400},
		{"POST", "/api/v2/device/nRouterCNTRL/routes", `{"routes":["not-a-cidr"]}`, 400},
		{"POST", "/api/v2/device/nNopeCNTRL/routes", `{"routes":[]}`, 404},
		{"GET", "/api/v2/device/nNopeCNTRL/routes", ``, 404},
		{"DELETE", "/api/v2/device/nNopeCNTRL", ``, 404},
		{"DELETE", "/api/v2/tailnet/-/keys/kNopeCNTRL", ``, 404},
		{"GET", "/api/v2/no/such/endpoint", ``, 404},
	}
	for _, tc := range cases {
		resp, body := r.do(t, tc.method, tc.path, tc.body, nil)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s %s: status %d, want %d (%s)", tc.method, tc.path, tc.body, resp.StatusCode, tc.want, body)
			continue
		}
		message(t, body)
	}
	if got := r.tn.Devices()[0].EnabledRoutes; len(got) != 0 {
		t.Fatalf("a bad request changed routes: %v", got)
	}
	if len(r.api.Keys()) != 1 {
		t.Fatal("a bad request created a key")
	}
}

func TestDeviceListShapeMatchesTheAPI(t *testing.T) {
	r := newRig(t)
	_, body := r.do(t, "GET", "/api/v2/tailnet/-/devices?fields=all", "", nil)
	var all struct{ Devices []map[string]any }
	if err := json.Unmarshal(body, &all); err != nil || len(all.Devices) != 1 {
		t.Fatalf("devices: %s", body)
	}
	for _, k := range []string{"addresses", "nodeId", "id", "name", "hostname", "tags", "isEphemeral", "advertisedRoutes", "enabledRoutes"} {
		if _, ok := all.Devices[0][k]; !ok {
			t.Errorf("fields=all: %q missing", k)
		}
	}
	_, body = r.do(t, "GET", "/api/v2/tailnet/-/devices", "", nil)
	var def struct{ Devices []map[string]any }
	json.Unmarshal(body, &def)
	if _, ok := def.Devices[0]["enabledRoutes"]; ok {
		t.Error("default fields include routes; the real API lists them only with fields=all")
	}

	// The official client reads and sets routes on the same device.
	c := &tailscale.Client{BaseURL: mustURL(t, r.srv.URL), APIKey: r.token}
	ctx := context.Background()
	if err := c.Devices().SetSubnetRoutes(ctx, "nRouterCNTRL", []string{"192.0.2.0/24"}); err != nil {
		t.Fatal(err)
	}
	rt, err := c.Devices().SubnetRoutes(ctx, "nRouterCNTRL")
	if err != nil || !slices.Equal(rt.Enabled, []string{"192.0.2.0/24"}) || !slices.Equal(rt.Advertised, []string{"192.0.2.0/24"}) {
		t.Fatalf("routes: %+v %v", rt, err)
	}
	devs, err := c.Devices().List(ctx, tailscale.WithFields(tailscale.IncludeFieldsAll))
	if err != nil || len(devs) != 1 || !devs[0].IsEphemeral || !slices.Equal(devs[0].EnabledRoutes, []string{"192.0.2.0/24"}) {
		t.Fatalf("official list: %+v %v", devs, err)
	}
}

func TestOAuthTokenExchange(t *testing.T) {
	r := newRig(t)
	r.api.SetPolicy([]byte(`{"tagOwners":{"tag:env":["autogroup:admin"]},"grants":[]}`))
	c := &tailscale.Client{BaseURL: mustURL(t, r.srv.URL), APIKey: r.token}
	cl, err := c.Keys().CreateOAuthClient(context.Background(), tailscale.CreateOAuthClientRequest{Scopes: []string{"auth_keys"}, Tags: []string{"tag:env"}})
	if err != nil {
		t.Fatal(err)
	}
	post := func(form url.Values, basic bool) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", r.srv.URL+"/api/v2/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic {
			req.SetBasicAuth(cl.ID, cl.Key)
		}
		return testhttp.Do(t, nil, req)
	}
	for _, basic := range []bool{false, true} {
		form := url.Values{"grant_type": {"client_credentials"}}
		if !basic {
			form.Set("client_id", cl.ID)
			form.Set("client_secret", cl.Key)
		}
		resp, body := post(form, basic)
		var tok struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			ExpiresIn   int    `json:"expires_in"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &tok) != nil ||
			!strings.HasPrefix(tok.AccessToken, "tskey-api-") || tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 {
			t.Fatalf("basic=%v: %d %s", basic, resp.StatusCode, body)
		}
		if strings.Contains(string(body), cl.Key) {
			t.Fatal("token response echoes the client secret")
		}
	}
	if resp, _ := post(url.Values{"grant_type": {"password"}, "client_id": {cl.ID}, "client_secret": {cl.Key}}, false); resp.StatusCode != 400 {
		t.Fatalf("wrong grant type: %d", resp.StatusCode)
	}
	resp, body := post(url.Values{"grant_type": {"client_credentials"}, "client_id": {cl.ID}, "client_secret": {cl.Key + "x"}}, false)
	if resp.StatusCode != 401 || strings.Contains(string(body), cl.Key) {
		t.Fatalf("wrong secret: %d %s", resp.StatusCode, body)
	}
}

func TestRedeemAuthKeyHonoursSingleUseExpiryAndTailnetLock(t *testing.T) {
	r := newRig(t)
	r.api.SetPolicy([]byte(`{"tagOwners":{"tag:env":["autogroup:admin"]},"grants":[]}`))
	ctx := context.Background()
	admin := &tailscale.Client{BaseURL: mustURL(t, r.srv.URL), APIKey: r.token}
	mint := func(c *tailscale.Client, reusable bool, secs int64) string {
		var req tailscale.CreateKeyRequest
		req.Capabilities.Devices.Create.Tags = []string{"tag:env"}
		req.Capabilities.Devices.Create.Ephemeral = true
		req.Capabilities.Devices.Create.Reusable = reusable
		req.ExpirySeconds = secs
		k, err := c.Keys().CreateAuthKey(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return k.Key
	}
	single := mint(admin, false, 300)
	info, err := r.api.RedeemAuthKey(single)
	if err != nil || !info.Ephemeral || !slices.Equal(info.Tags, []string{"tag:env"}) {
		t.Fatalf("first use: %+v %v", info, err)
	}
	if _, err := r.api.RedeemAuthKey(single); err == nil {
		t.Fatal("single-use key used twice")
	}
	reusable := mint(admin, true, 300)
	for range 2 {
		if _, err := r.api.RedeemAuthKey(reusable); err != nil {
			t.Fatalf("reusable: %v", err)
		}
	}
	if _, err := r.api.RedeemAuthKey(reusable + "x"); err == nil {
		t.Fatal("altered key accepted")
	}

	cl, err := admin.Keys().CreateOAuthClient(ctx, tailscale.CreateOAuthClientRequest{Scopes: []string{"auth_keys"}, Tags: []string{"tag:env"}})
	if err != nil {
		t.Fatal(err)
	}
	oc := &tailscale.Client{BaseURL: mustURL(t, r.srv.URL), Auth: &tailscale.OAuth{ClientID: cl.ID, ClientSecret: cl.Key}}
	viaOAuth := mint(oc, true, 300)
	r.api.SetTailnetLock(true)
	if _, err := r.api.RedeemAuthKey(viaOAuth); err == nil || !strings.Contains(err.Error(), "tailnet lock") {
		t.Fatalf("OAuth-minted key under tailnet lock: %v", err)
	}
	r.api.SetTailnetLock(false)
	if _, err := r.api.RedeemAuthKey(viaOAuth); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(301 * time.Second)
	if _, err := r.api.RedeemAuthKey(reusable); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired key: %v", err)
	}
	for _, k := range r.api.Keys() {
		if strings.Contains(single, k.ID) && !k.Used {
			t.Fatal("Keys does not report the used single-use key")
		}
	}
}

func TestFailNextRejectsUnknownOperation(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("unknown op accepted")
		}
	}()
	fake.New(fake.Options{}).FailNext("policy.gett", 500, "x")
}

// TestConcurrentConnectsEachGetTheirOwnClientAndKey runs the connect and
// verify credential dance ten times at once.
func TestConcurrentConnectsEachGetTheirOwnClientAndKey(t *testing.T) {
	r := newRig(t)
	r.api.SetPolicy([]byte(`{"tagOwners":{"tag:env":["autogroup:admin"]},"grants":[]}`))
	admin := &tailscale.Client{BaseURL: mustURL(t, r.srv.URL), APIKey: r.token}
	ctx := context.Background()
	const n = 10
	errs := make(chan error, n)
	for range n {
		go func() {
			cl, err := admin.Keys().CreateOAuthClient(ctx, tailscale.CreateOAuthClientRequest{Scopes: []string{"auth_keys"}, Tags: []string{"tag:env"}})
			if err != nil {
				errs <- err
				return
			}
			oc := &tailscale.Client{BaseURL: mustURL(t, r.srv.URL), Auth: &tailscale.OAuth{ClientID: cl.ID, ClientSecret: cl.Key}}
			var req tailscale.CreateKeyRequest
			req.Capabilities.Devices.Create.Tags = []string{"tag:env"}
			req.ExpirySeconds = 60
			if _, err := oc.Keys().CreateAuthKey(ctx, req); err != nil {
				errs <- err
				return
			}
			errs <- admin.Keys().Delete(ctx, cl.ID)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	counts := map[string]int{}
	for _, k := range r.api.Keys() {
		counts[k.Type]++
		if k.Type == fake.KeyTypeClient && !k.Revoked {
			t.Errorf("client %s not revoked", k.ID)
		}
		if k.Type == fake.KeyTypeAPI && k.ClientID != "" && !k.Revoked {
			t.Errorf("token %s of a revoked client still counts as live", k.ID)
		}
	}
	if counts[fake.KeyTypeClient] != n || counts[fake.KeyTypeAuth] != n {
		t.Fatalf("keys by type: %v", counts)
	}
}

func TestMemTailnet(t *testing.T) {
	var m fake.MemTailnet
	m.Add(fake.Device{NodeID: "a", Addresses: []string{"100.64.0.1"}})
	m.Add(fake.Device{NodeID: "b"})
	m.Add(fake.Device{NodeID: "a", Hostname: "replaced"})
	devs := m.Devices()
	if len(devs) != 2 || devs[0].Hostname != "replaced" {
		t.Fatalf("Add should replace by NodeID: %+v", devs)
	}
	devs[1].Tags = append(devs[1].Tags, "tag:mutated")
	if len(m.Devices()[1].Tags) != 0 {
		t.Fatal("Devices returns shared slices")
	}
	if err := m.SetEnabledRoutes("zz", nil); !errors.Is(err, fake.ErrNotFound) {
		t.Fatalf("unknown node: %v", err)
	}
	if err := m.DeleteDevice("a"); err != nil || len(m.Devices()) != 1 {
		t.Fatalf("delete: %v", err)
	}
	if err := m.DeleteDevice("a"); !errors.Is(err, fake.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestValidateRunsATestListAgainstTheCurrentPolicy(t *testing.T) {
	r := newRig(t)
	r.api.SetPolicy([]byte(`{
		"tagOwners": {"tag:env": ["autogroup:admin"]},
		"hosts": {"app": "192.0.2.10"},
		"grants": [{"src": ["tag:env"], "dst": ["app"], "ip": ["tcp:443"]}],
		"acls": [{"action": "accept", "src": ["alice@example.com"], "dst": ["192.0.2.0/24:22,80"]}],
	}`))
	c := &tailscale.Client{BaseURL: mustURL(t, r.srv.URL), APIKey: r.token}
	ctx := context.Background()
	pass := []tailscale.ACLTest{
		{Source: "tag:env", Accept: []string{"app:443", "192.0.2.10:443"}, Deny: []string{"app:444", "192.0.2.11:443"}},
		{Source: "alice@example.com", Accept: []string{"192.0.2.99:22", "app:80"}, Deny: []string{"app:443"}},
	}
	if err := c.PolicyFile().Validate(ctx, pass); err != nil {
		t.Fatalf("passing tests: %v", err)
	}
	fail := []tailscale.ACLTest{{Source: "tag:env", Accept: []string{"app:22"}}}
	if err := c.PolicyFile().Validate(ctx, fail); err == nil || !strings.Contains(err.Error(), "want: Accept, got: Drop") {
		t.Fatalf("failing tests: %v", err)
	}
}
