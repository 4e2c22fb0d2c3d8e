package api

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

// TestFederatedEnvironmentThroughTheAPI: the API is the OIDC issuer
// (discovery and key set, public), the stand-in fetches its keys from it,
// connect answers and status report the federated identity, no database
// byte holds a client secret, and verify and a run work.
func TestFederatedEnvironmentThroughTheAPI(t *testing.T) {
	e := newE2E(t)
	srv := httptest.NewUnstartedServer(nil)
	url := "http://" + srv.Listener.Addr().String()
	iss := e.Federate(url)
	m := &run.Manager{Connect: e.Connect, Store: e.st, Logger: e.Logger()}
	t.Cleanup(m.Close)
	srv.Config.Handler = New(Options{Store: e.st, PrivateNetwork: e.Connect, Runs: m, Logger: e.Logger(), Issuer: iss})
	srv.Start()
	t.Cleanup(srv.Close)
	e.url = url

	// Discovery and the key set need no token.
	a := e.do("GET", "/.well-known/openid-configuration", "", nil)
	e.must(a, 200, "discovery")
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	json.Unmarshal(a.body, &doc)
	if doc.Issuer != url || doc.JWKSURI != url+"/.well-known/jwks.json" {
		t.Errorf("discovery document %s", a.body)
	}
	a = e.do("GET", "/.well-known/jwks.json", "", nil)
	e.must(a, 200, "jwks")
	if !strings.Contains(string(a.body), `"kid"`) || strings.Contains(string(a.body), `"d"`) {
		t.Errorf("key set lacks a key id or publishes a private part: %s", a.body)
	}

	tok := e.sb.NewAPIToken()
	e.must(e.do("POST", "/v1/environments", e.admin, map[string]string{"name": "fed"}), 201, "create")
	pn := "/v1/environments/fed/private-network"
	a = e.do("PUT", pn, e.admin, map[string]any{"api_token": tok, "targets": []string{sandbox.DemoAppName + ":80"}})
	e.must(a, 200, "connect")
	t.Cleanup(func() { e.Connect.Disconnect(t.Context(), e.org, "fed", tok) })
	var res connect.Result
	json.Unmarshal(a.body, &res)
	if res.Credential != controlplane.FederatedIdentity || res.OAuthClientID == "" {
		t.Fatalf("connect answer: %s", a.body)
	}
	a = e.do("GET", pn, e.runner, nil)
	e.must(a, 200, "status")
	var st connect.Status
	json.Unmarshal(a.body, &st)
	if st.Credential != controlplane.FederatedIdentity || st.OAuthClientID != res.OAuthClientID {
		t.Errorf("status does not say which credential: %s", a.body)
	}
	if len(e.Secrets()) != 0 {
		t.Errorf("the control handed tailgate %d client secrets", len(e.Secrets()))
	}
	for name, b := range e.dbBytes() {
		if bytes.Contains(b, []byte("tskey-")) {
			t.Errorf("%s holds a Tailscale credential", name)
		}
	}
	if e.sb.API().IssuerFetches(url) != 0 {
		t.Errorf("the stand-in fetched the keys before any exchange")
	}

	a = e.do("POST", pn+"/verify", e.admin, nil)
	e.must(a, 200, "verify")
	var v connect.Verification
	json.Unmarshal(a.body, &v)
	if !v.OK {
		t.Errorf("verify: %s", a.body)
	}
	if e.sb.API().IssuerFetches(url) == 0 {
		t.Errorf("the stand-in did not fetch the issuer's keys from the API")
	}
	a = e.do("POST", "/v1/environments/fed/runs", e.runner, map[string]any{"lifetime_seconds": 60})
	e.must(a, 201, "start run")
	info := decodeRun(t, a)
	e.must(e.do("DELETE", "/v1/runs/"+info.ID, e.runner, nil), 200, "end run")
}
