package headscale_test

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/testhttp"
	"github.com/tailgate-dev/tailgate/pkg/runner"
)

// TestRunnerRunsOnHeadscaleThroughTheRelay: a headscale environment's
// stored key is reusable, so it never leaves the servers: a run asked for
// on a runner's host stays on the server and the runner reaches its proxy
// through the API's relay, with the run's relay token. The private app is
// reached; a wrong token, or another org, is not relayed.
func TestRunnerRunsOnHeadscaleThroughTheRelay(t *testing.T) {
	f := newFixture(t)
	f.connect(t, "staging", app1080.String())
	ctx := ctxT(t, 2*time.Minute)
	srv := httptest.NewServer(api.New(api.Options{Store: f.st, PrivateNetwork: f.svc, Runs: f.m}))
	defer srv.Close()
	tok, _, err := f.st.CreateAPIToken(ctx, f.org, "ci", store.RoleRunner)
	if err != nil {
		t.Fatal(err)
	}
	c := &runner.Client{Server: srv.URL, Token: tok, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	r, err := c.Start(ctx, "staging", runner.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Placement != run.PlacementRelay {
		t.Fatalf("placement %q; want relay", r.Placement)
	}
	hc := testhttp.ThroughProxy(t, r.ProxyURL)
	resp, b := testhttp.Get(t, hc, "http://"+app1080.String()+"/")
	if resp.StatusCode != 200 || !strings.Contains(string(b), "app 192.0.2.10:80") {
		t.Errorf("private app through the relay: %s %.80q", resp.Status, b)
	}
	hc.CloseIdleConnections()

	// The relay needs the run's token and the run's org.
	relay := func(token, relayToken string) int {
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req, _ := http.NewRequest("GET", srv.URL+"/v1/runs/"+r.ID+"/relay", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", api.RelayProtocol)
		req.Header.Set(api.RelayTokenHeader, relayToken)
		req.Write(conn)
		resp, err := http.ReadResponse(bufioReader(conn), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	if code := relay(tok, "tgr_wrong"); code != http.StatusNotFound {
		t.Errorf("relay with a wrong token: %d, want 404", code)
	}
	other, err := f.st.CreateOrg(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	otherTok, _, _ := f.st.CreateAPIToken(ctx, other.ID, "ci", store.RoleRunner)
	if code := relay(otherTok, "tgr_wrong"); code != http.StatusNotFound {
		t.Errorf("relay from another org: %d, want 404", code)
	}

	rep, err := r.End(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Events) == 0 || rep.Events[0].Host != app1080.Addr().String() {
		t.Errorf("report events %+v; want the server proxy's events", rep.Events)
	}
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
