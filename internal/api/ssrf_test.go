package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/tailgatetest"

	"github.com/tailgate-dev/tailgate/internal/errcode"
)

// TestConnectNeverEchoesWhatASelfHostedControlURLAnswered drives issue
// 11's SSRF through the API with the real connect service: a control URL
// on loopback that answers a canary, or redirects, or the metadata
// address. The canary and the API key appear in no answer and no log.
func TestConnectNeverEchoesWhatASelfHostedControlURLAnswered(t *testing.T) {
	const canary = "METADATA-SECRET-xyz"
	const apiKey = "hskey-api-NEVERSHOWN-0123456789"
	var landed atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/redirect/"):
			http.Redirect(w, r, "/landing", http.StatusFound)
		case r.URL.Path == "/landing":
			landed.Add(1)
			w.Write([]byte(canary))
		default:
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"message":"` + canary + `"}`))
		}
	}))
	t.Cleanup(upstream.Close)

	ctx := context.Background()
	stk := tailgatetest.New(t, nil)
	st, admin, logs := stk.Store, stk.Admin, stk.Logs
	if _, err := st.CreateEnvironment(ctx, stk.Org, "staging"); err != nil {
		t.Fatal(err)
	}
	svc, log := stk.Connect, stk.Logger()
	srv := httptest.NewServer(New(Options{Store: st, PrivateNetwork: svc, Logger: log}))
	t.Cleanup(srv.Close)

	for _, c := range []struct {
		url    string
		status int
		code   errcode.Code
	}{
		{upstream.URL, 502, errcode.Upstream},
		{upstream.URL + "/redirect", 502, errcode.Upstream},
		{"http://169.254.169.254", 400, errcode.BadInput},
		{"http://[fd00:ec2::254]", 400, errcode.BadInput},
	} {
		a := call(t, srv.URL, "PUT", "/v1/environments/staging/private-network", admin, map[string]any{
			"api_token": apiKey, "targets": []string{"app:80"},
			"control": map[string]string{"type": "headscale", "url": c.url},
		})
		if a.status != c.status || a.err().Code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.url, a.status, a.body, c.status, c.code)
		}
		for _, leak := range []string{canary, "NEVERSHOWN"} {
			if strings.Contains(string(a.body), leak) {
				t.Errorf("%s: the answer contains %q: %s", c.url, leak, a.body)
			}
		}
	}
	if n := landed.Load(); n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
	for _, leak := range []string{canary, "NEVERSHOWN"} {
		if strings.Contains(logs.String(), leak) {
			t.Errorf("the logs contain %q:\n%s", leak, logs.String())
		}
	}
}
