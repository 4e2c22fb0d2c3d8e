package connect

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/store"
)

// oneEnvStore is a connect.Store holding one environment and no
// connection: enough for Connect to reach the control.
type oneEnvStore struct{ Store }

func (oneEnvStore) GetEnvironment(_ context.Context, orgID, name string) (store.Environment, error) {
	return store.Environment{ID: "env-1", OrgID: orgID, Name: name}, nil
}

func (oneEnvStore) GetConnection(context.Context, string, string) (store.Connection, error) {
	return store.Connection{}, store.ErrNotFound
}

const canary = "METADATA-SECRET-xyz"

// seenRequest is what a control stand-in was sent.
type seenRequest struct {
	host, path, auth string
}

type recorder struct {
	mu   sync.Mutex
	seen []seenRequest
}

func (r *recorder) handler(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, seenRequest{req.Host, req.URL.Path, req.Header.Get("Authorization")})
		r.mu.Unlock()
		next(w, req)
	}
}

func (r *recorder) requests() []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenRequest(nil), r.seen...)
}

func listenOn(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// connectTo runs one headscale connect against url and returns the error
// and everything logged.
func connectTo(t *testing.T, policy *outbound.Policy, url string) (*Error, string) {
	t.Helper()
	var logs bytes.Buffer
	s := &Service{Store: oneEnvStore{}, Outbound: policy,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.Connect(ctx, Request{OrgID: "org", Env: "staging", APIToken: "hskey-api-SECRETKEY-0123456789",
		Targets: []string{"app:80"}, Control: controlplane.Control{Type: controlplane.Headscale, URL: url}})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("connect %s: %v, want a *connect.Error", url, err)
	}
	return e, logs.String()
}

// TestSelfHostedControlURLIsNoWayIntoTheServersNetwork is issue 11's SSRF:
// the answer of whatever listens at the control URL is never echoed, no
// redirect is followed, and refused addresses are not dialled.
func TestSelfHostedControlURLIsNoWayIntoTheServersNetwork(t *testing.T) {
	other := new(recorder)
	otherSrv := listenOn(t, "127.0.0.2:0", other.handler(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(canary))
	}))
	main := new(recorder)
	mainSrv := listenOn(t, "127.0.0.1:0", main.handler(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/json500/"):
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"code":13,"message":"` + canary + `"}`))
		case strings.HasPrefix(r.URL.Path, "/text403/"):
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(canary))
		case strings.HasPrefix(r.URL.Path, "/ok/"):
			w.Write([]byte(canary)) // 200, not JSON
		case strings.HasPrefix(r.URL.Path, "/same/"):
			http.Redirect(w, r, "/landing/"+canary, http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/other/"):
			http.Redirect(w, r, otherSrv.URL+"/landing", http.StatusTemporaryRedirect)
		default:
			w.Write([]byte(canary))
		}
	}))
	lo := outbound.AllowLoopback()

	for _, c := range []struct {
		name, path string
		mention    string
	}{
		{"JSON error body", "/json500", "HTTP 500"},
		{"text error body", "/text403", "lacks permission"},
		{"non-JSON success body", "/ok", "not headscale's JSON"},
		{"same-host redirect", "/same", "redirect"},
		{"other-host redirect", "/other", "redirect"},
	} {
		e, logs := connectTo(t, lo, mainSrv.URL+c.path)
		t.Logf("%s: %s: %s", c.name, e.Code, e.Message)
		for where, text := range map[string]string{"error": e.Error(), "message": e.Message, "logs": logs, "cause": errText(e.Err)} {
			if strings.Contains(text, canary) {
				t.Errorf("%s: the upstream body is echoed in the %s: %s", c.name, where, text)
			}
			if strings.Contains(text, "SECRETKEY") {
				t.Errorf("%s: the API key is in the %s", c.name, where)
			}
		}
		if !strings.Contains(e.Message, c.mention) {
			t.Errorf("%s: message %q does not mention %q", c.name, e.Message, c.mention)
		}
	}
	for _, r := range main.requests() {
		if strings.HasPrefix(r.path, "/landing") {
			t.Errorf("a redirect was followed to %s (Authorization %q)", r.path, r.auth)
		}
	}
	if got := other.requests(); len(got) != 0 {
		t.Errorf("the other host was called: %+v", got)
	}

	// Loopback is refused unless the operator allows it, before dialling.
	before := len(main.requests())
	e, _ := connectTo(t, nil, mainSrv.URL)
	if e.Code != errcode.BadInput || !strings.Contains(e.Message, "loopback") || !strings.Contains(e.Message, "--outbound-allow") {
		t.Errorf("loopback with the default policy: %s %q", e.Code, e.Message)
	}
	if n := len(main.requests()) - before; n != 0 {
		t.Errorf("a refused control got %d requests", n)
	}

	// The metadata address is refused even when loopback is allowed, at
	// once, without a connection attempt that would have to time out.
	start := time.Now()
	e, _ = connectTo(t, lo, "http://169.254.169.254/latest/meta-data")
	if e.Code != errcode.BadInput || !strings.Contains(e.Message, "169.254.169.254") {
		t.Errorf("metadata: %s %q", e.Code, e.Message)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing the metadata address took %v", d)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestMintingRefusesAControlURLThatNowResolvesToARefusedAddress: runs and
// verify join with tsnet, which dials the control itself, so the URL is
// checked before a key is handed out.
func TestMintingRefusesAControlURLThatNowResolvesToARefusedAddress(t *testing.T) {
	ctx := context.Background()
	env := store.Environment{Name: "staging"}
	conn := store.Connection{Tag: "tag:tailgate-staging", OAuthClientID: "1",
		Control: controlplane.Control{Type: controlplane.Headscale, URL: "http://169.254.169.254"}}
	s := &Service{Outbound: outbound.AllowLoopback()}
	cred, err := s.credential(ctx, env, conn, controlplane.Credential{Kind: controlplane.PreAuthKey, ID: conn.OAuthClientID, Secret: "hskey-auth-x", Tag: conn.Tag})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cred.MintKey(ctx, "verify")
	var e *Error
	if !errors.As(err, &e) || e.Code != errcode.BadInput || !strings.Contains(e.Message, "link-local") {
		t.Fatalf("mint for a metadata control: %v", err)
	}
	conn.Control.URL = "http://127.0.0.1:1"
	if cred, err = s.credential(ctx, env, conn, controlplane.Credential{Kind: controlplane.PreAuthKey, ID: conn.OAuthClientID, Secret: "hskey-auth-x", Tag: conn.Tag}); err != nil {
		t.Fatal(err)
	}
	if _, err := cred.MintKey(ctx, "verify"); err != nil {
		t.Fatalf("mint for an allowed loopback control: %v", err)
	}
}
