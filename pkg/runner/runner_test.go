package runner_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/errcode"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tailgatetest"
	"github.com/tailgate-dev/tailgate/internal/testhttp"
	"github.com/tailgate-dev/tailgate/pkg/runner"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// server is tailgate's API over the sandbox, with environment "web"
// connected to the private app.
type server struct {
	*tailgatetest.Stack
	url string
	m   *run.Manager
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{Stack: tailgatetest.New(t, sandboxtest.Shared(t))}
	s.ConnectEnv(t, "web", sandbox.DemoAppName+":80")
	s.m = &run.Manager{Connect: s.Connect, Store: s.Store, Logger: s.Logger(), Lease: 2 * time.Second}
	t.Cleanup(s.m.Close)
	srv := httptest.NewServer(api.New(api.Options{Store: s.Store, PrivateNetwork: s.Connect, Runs: s.m, RunLease: 2 * time.Second, Logger: s.Logger()}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *server) client(token string) *runner.Client {
	return &runner.Client{Server: s.url, Token: token}
}

func get(t *testing.T, proxyURL, target string) (int, string) {
	t.Helper()
	resp, b := testhttp.Get(t, testhttp.ThroughProxy(t, proxyURL), target)
	return resp.StatusCode, string(b)
}

// TestRunJoinsFromTheRunnersHost: on Tailscale the run's node joins from
// this process (the runner's host) with a key minted for this run, and
// the run's proxy is this process's: the server holds no node for it.
func TestRunJoinsFromTheRunnersHost(t *testing.T) {
	s := newServer(t)
	ctx := tailgatetest.Ctx(t, 2*time.Minute)
	r, err := s.client(s.Runner).Start(ctx, "web", runner.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Placement != run.PlacementRunner || r.Node == "" {
		t.Fatalf("run %+v; want placement runner with a node", r)
	}
	if code, body := get(t, r.ProxyURL, "http://"+sandbox.DemoAppName+"/"); code != 200 || !strings.Contains(body, sandbox.DemoAppText) {
		t.Errorf("private app through the runner's proxy: %d %.80q", code, body)
	}
	if code, _ := get(t, r.ProxyURL, "http://example.com/"); code != http.StatusForbidden {
		t.Errorf("public host through the runner's proxy: %d, want 403", code)
	}
	// The server's view: open, node named, no proxy of its own.
	info, err := s.m.Get(ctx, s.Org, r.ID)
	if err != nil || info.State != run.StateReady || info.Node != r.Node || info.ProxyAddr != "" {
		t.Errorf("server's view %+v, %v", info, err)
	}
	// Heartbeats keep it past its 2 s lease.
	time.Sleep(3 * time.Second)
	s.m.SweepOnce(ctx)
	if info, _ := s.m.Get(ctx, s.Org, r.ID); info.State != run.StateReady {
		t.Errorf("run with heartbeats was swept: %+v", info)
	}
	rep, err := r.End(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.EndReason != api.EndReasonClient || len(rep.Events) != 2 || rep.Events[1].Reason != "not_a_target" {
		t.Errorf("report %+v", rep)
	}
	sandboxtest.WaitDeviceGone(t, s.Sandbox, r.Node)
}

// TestRunKeyIsSingleUseAndOnlyInTheStartAnswer: the key a runner joins
// with is single-use, ephemeral, pre-authorized, tagged and short-lived,
// and appears in the start answer to the principal that started the run
// and nowhere else: no other answer, log line or database byte.
func TestRunKeyIsSingleUseAndOnlyInTheStartAnswer(t *testing.T) {
	s := newServer(t)
	ctx := tailgatetest.Ctx(t, 2*time.Minute)
	var a api.Run
	if err := s.client(s.Runner).Do(ctx, "POST", "/v1/environments/web/runs", api.StartRunRequest{Placement: run.PlacementRunner}, &a); err != nil {
		t.Fatal(err)
	}
	if a.Join == nil || a.Join.AuthKey == "" || a.Relay != nil {
		t.Fatalf("start answer %+v; want a join ticket", a)
	}
	key := a.Join.AuthKey
	found := false
	for _, k := range s.Sandbox.API().Keys() {
		if k.Type == "auth" && k.Created.After(time.Now().Add(-time.Minute)) && strings.Contains(k.Description, "run web") {
			if !k.Reusable && k.Ephemeral && k.Preauth && len(k.Tags) == 1 && k.Tags[0] == "tag:tailgate-web" && time.Until(k.Expires) <= 5*time.Minute {
				found = true
			} else {
				t.Errorf("run key %+v; want single-use, ephemeral, pre-authorized, tag:tailgate-web, expiring within 5 minutes", k)
			}
		}
	}
	if !found {
		t.Fatal("no run key was minted")
	}
	// Single use: the control redeems it once (the sandbox's control
	// accepts any key, so redeem it at the stand-in as Tailscale would).
	if _, err := s.Sandbox.API().RedeemAuthKey(key); err != nil {
		t.Fatalf("first use of the run key: %v", err)
	}
	if _, err := s.Sandbox.API().RedeemAuthKey(key); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("second use of the run key: %v; want already used", err)
	}

	// Every other answer about the run, to its own principal and to
	// others, lacks the key.
	var answers []string
	for _, c := range []struct{ method, path, token string }{
		{"GET", "/v1/runs/" + a.ID, s.Runner},
		{"GET", "/v1/runs/" + a.ID, s.Admin},
		{"GET", "/v1/runs/" + a.ID, s.OtherAdmin},
		{"GET", "/v1/runs", s.Admin},
		{"POST", "/v1/runs/" + a.ID + "/heartbeat", s.Runner},
		{"DELETE", "/v1/runs/" + a.ID, s.Runner},
	} {
		var raw json.RawMessage
		err := s.client(c.token).Do(ctx, c.method, c.path, nil, &raw)
		answers = append(answers, string(raw))
		if err != nil {
			answers = append(answers, err.Error())
		}
	}
	db, err := os.ReadFile(s.DBPath)
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(s.DBPath + "-wal")
	for where, b := range map[string]string{"answers": strings.Join(answers, "\n"), "logs": s.Logs.String(), "database": string(db) + string(wal)} {
		if strings.Contains(b, key) {
			t.Errorf("the run key is in the %s", where)
		}
	}
}

// TestRunnerBadInput: another org's token, an ended run, a forged id and
// a bad placement are each refused with a clear code.
func TestRunnerBadInput(t *testing.T) {
	s := newServer(t)
	ctx := tailgatetest.Ctx(t, 2*time.Minute)
	code := func(err error) errcode.Code {
		var ae *runner.APIError
		if errors.As(err, &ae) {
			return ae.Code
		}
		return ""
	}
	if _, err := s.client(s.OtherAdmin).Start(ctx, "web", runner.Options{}); code(err) != errcode.NotFound {
		t.Errorf("another org's run of web: %v; want not_found", err)
	}
	r, err := s.client(s.Runner).Start(ctx, "web", runner.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.client(s.OtherAdmin).Do(ctx, "POST", "/v1/runs/"+r.ID+"/heartbeat", nil, nil); code(err) != errcode.NotFound {
		t.Errorf("another org's heartbeat: %v", err)
	}
	if _, err := r.End(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.client(s.Runner).Do(ctx, "POST", "/v1/runs/"+r.ID+"/heartbeat", nil, nil); code(err) != errcode.RunEnded {
		t.Errorf("heartbeat of an ended run: %v; want run_ended", err)
	}
	if err := s.client(s.Runner).Do(ctx, "POST", "/v1/runs/run_forgedforgedforged/heartbeat", nil, nil); code(err) != errcode.NotFound {
		t.Errorf("forged run id: %v; want not_found", err)
	}
	if err := s.client(s.Runner).Do(ctx, "POST", "/v1/environments/web/runs", map[string]string{"placement": "moon"}, nil); code(err) != errcode.BadInput {
		t.Errorf("placement moon: %v; want bad_input", err)
	}
	// A relay for a run that is not relayed is not found.
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/v1/runs/"+r.ID+"/relay", nil)
	req.Header.Set("Authorization", "Bearer "+s.Runner)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", api.RelayProtocol)
	req.Header.Set(api.RelayTokenHeader, "tgr_guess")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("relay of a run that is not relayed: %s", resp.Status)
	}
}

// TestFederatedRunJoinsFromTheRunnersHost: with tailgate as the OIDC
// issuer (its own API), the server exchanges an ID token for the run's
// single-use key; the runner's host joins with it as before.
func TestFederatedRunJoinsFromTheRunnersHost(t *testing.T) {
	s := &server{Stack: tailgatetest.New(t, sandboxtest.Shared(t))}
	srv := httptest.NewUnstartedServer(nil)
	s.url = "http://" + srv.Listener.Addr().String()
	iss := s.Federate(s.url)
	s.m = &run.Manager{Connect: s.Connect, Store: s.Store, Logger: s.Logger(), Lease: 2 * time.Second}
	t.Cleanup(s.m.Close)
	srv.Config.Handler = api.New(api.Options{Store: s.Store, PrivateNetwork: s.Connect, Runs: s.m, RunLease: 2 * time.Second, Logger: s.Logger(), Issuer: iss})
	srv.Start()
	t.Cleanup(srv.Close)
	if res := s.ConnectEnv(t, "web", sandbox.DemoAppName+":80"); res.Credential != controlplane.FederatedIdentity {
		t.Fatalf("connect kept %q", res.Credential)
	}
	ctx := tailgatetest.Ctx(t, 2*time.Minute)
	r, err := s.client(s.Runner).Start(ctx, "web", runner.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Placement != run.PlacementRunner {
		t.Errorf("placement %q, want runner", r.Placement)
	}
	if code, body := get(t, r.ProxyURL, "http://"+sandbox.DemoAppName+"/"); code != 200 || !strings.Contains(body, sandbox.DemoAppText) {
		t.Errorf("private app through the runner's proxy: %d %.80q", code, body)
	}
	if _, err := r.End(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Sandbox.API().IssuerFetches(s.url) == 0 {
		t.Error("the stand-in never fetched the issuer's keys from the API")
	}
}
