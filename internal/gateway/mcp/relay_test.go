package mcp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// notifyingTarget is a streamable HTTP target whose resources can be
// subscribed to and whose tool "shout" logs a line to its caller.
func notifyingTarget(t *testing.T, name string) (*sdk.Server, string) {
	s := sdk.NewServer(&sdk.Implementation{Name: name, Version: "1"}, &sdk.ServerOptions{
		SubscribeHandler:   func(context.Context, *sdk.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *sdk.UnsubscribeRequest) error { return nil },
	})
	addTestTools(s, name)
	sdk.AddTool(s, &sdk.Tool{Name: "shout"}, func(ctx context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, struct{}, error) {
		req.Session.Log(ctx, &sdk.LoggingMessageParams{Level: "warning", Data: "from " + name})
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "shouted"}}}, struct{}{}, nil
	})
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	t.Cleanup(srv.Close)
	return s, srv.URL + "/mcp"
}

// recorder is a client session that records what the gateway sends it.
type recorder struct {
	mu      sync.Mutex
	updates []string
	logs    []string
	cs      *sdk.ClientSession
}

func (r *recorder) seen() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.updates...), append([]string(nil), r.logs...)
}

func connectRecorder(t *testing.T, url string) *recorder {
	r := &recorder{}
	c := sdk.NewClient(&sdk.Implementation{Name: "rec", Version: "1"}, &sdk.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, req *sdk.ResourceUpdatedNotificationRequest) {
			r.mu.Lock()
			r.updates = append(r.updates, req.Params.URI)
			r.mu.Unlock()
		},
		LoggingMessageHandler: func(_ context.Context, req *sdk.LoggingMessageRequest) {
			r.mu.Lock()
			r.logs = append(r.logs, fmt.Sprint(req.Params.Data))
			r.mu.Unlock()
		},
	})
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	r.cs = cs
	return r
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Two targets, two client sessions: each session gets the resource
// updates it subscribed to (under prefixed URIs) and the log lines of
// its own calls, and never the other session's.
func TestFederatedNotificationsReachOnlyTheirSession(t *testing.T) {
	alpha, alphaURL := notifyingTarget(t, "alpha")
	beta, betaURL := notifyingTarget(t, "beta")
	cfg := federationConfig("conditional", fmt.Sprintf(`
          - name: alpha
            mcp: {host: %q}
          - name: beta
            mcp: {host: %q}`, alphaURL, betaURL))
	g := startGateway(t, cfg)
	a, b := connectRecorder(t, g.url), connectRecorder(t, g.url)
	ctx := context.Background()

	rr, err := a.cs.ListResources(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, r := range rr.Resources {
		uris = append(uris, r.URI)
	}
	if !contains(uris, "alpha+test://alpha/readme") || !contains(uris, "beta+test://beta/readme") {
		t.Fatalf("federated resource URIs are not prefixed by target: %v", uris)
	}
	if err := a.cs.Subscribe(ctx, &sdk.SubscribeParams{URI: "alpha+test://alpha/readme"}); err != nil {
		t.Fatal(err)
	}
	if err := b.cs.Subscribe(ctx, &sdk.SubscribeParams{URI: "beta+test://beta/readme"}); err != nil {
		t.Fatal(err)
	}
	for _, cs := range []*sdk.ClientSession{a.cs, b.cs} {
		if err := cs.SetLoggingLevel(ctx, &sdk.SetLoggingLevelParams{Level: "info"}); err != nil {
			t.Fatal(err)
		}
	}

	alpha.ResourceUpdated(ctx, &sdk.ResourceUpdatedNotificationParams{URI: "test://alpha/readme"})
	beta.ResourceUpdated(ctx, &sdk.ResourceUpdatedNotificationParams{URI: "test://beta/readme"})
	if got := callText(t, a.cs, "alpha_shout", nil); got != "shouted" {
		t.Fatalf("alpha_shout = %q", got)
	}
	if got := callText(t, b.cs, "beta_shout", nil); got != "shouted" {
		t.Fatalf("beta_shout = %q", got)
	}
	waitFor(t, "both sessions' updates and logs", func() bool {
		au, al := a.seen()
		bu, bl := b.seen()
		return len(au) > 0 && len(al) > 0 && len(bu) > 0 && len(bl) > 0
	})
	time.Sleep(100 * time.Millisecond) // anything misrouted would arrive by now
	au, al := a.seen()
	bu, bl := b.seen()
	if strings.Join(au, ",") != "alpha+test://alpha/readme" || strings.Join(al, ",") != "from alpha" {
		t.Errorf("session A got updates %v and logs %v; want only alpha's", au, al)
	}
	if strings.Join(bu, ",") != "beta+test://beta/readme" || strings.Join(bl, ",") != "from beta" {
		t.Errorf("session B got updates %v and logs %v; want only beta's", bu, bl)
	}

	// After unsubscribing, A hears nothing more about the resource.
	if err := a.cs.Unsubscribe(ctx, &sdk.UnsubscribeParams{URI: "alpha+test://alpha/readme"}); err != nil {
		t.Fatal(err)
	}
	alpha.ResourceUpdated(ctx, &sdk.ResourceUpdatedNotificationParams{URI: "test://alpha/readme"})
	time.Sleep(100 * time.Millisecond)
	if au, _ := a.seen(); len(au) != 1 {
		t.Errorf("updates after unsubscribe: %v", au)
	}
}

// A reload that keeps the route keeps the session: the same
// Mcp-Session-Id goes on calling tools, and its subscription and log
// level follow it to the new connection to the target.
func TestReloadKeepsOpenSessions(t *testing.T) {
	alpha, alphaURL := notifyingTarget(t, "alpha")
	cfg := federationConfig("always", fmt.Sprintf(`
          - name: alpha
            mcp: {host: %q}`, alphaURL))
	g := startGateway(t, cfg)
	a := connectRecorder(t, g.url)
	ctx := context.Background()
	if err := a.cs.Subscribe(ctx, &sdk.SubscribeParams{URI: "alpha+test://alpha/readme"}); err != nil {
		t.Fatal(err)
	}
	if err := a.cs.SetLoggingLevel(ctx, &sdk.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Fatal(err)
	}
	// The reloaded config changes something else about the route.
	reloaded := strings.Replace(cfg, "prefixMode: always", "prefixMode: always\n          failureMode: failOpen", 1)
	os.WriteFile(g.path, []byte(strings.ReplaceAll(reloaded, "%PORT%", portOf(g.url))), 0o600)
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := callText(t, a.cs, "alpha_shout", nil); got != "shouted" {
		t.Fatalf("after reload, alpha_shout = %q (the session should have survived)", got)
	}
	alpha.ResourceUpdated(ctx, &sdk.ResourceUpdatedNotificationParams{URI: "test://alpha/readme"})
	waitFor(t, "the log line and update after reload", func() bool {
		u, l := a.seen()
		return len(u) > 0 && len(l) > 0
	})

	// A reload that removes the route ends the session.
	os.WriteFile(g.path, []byte(strings.ReplaceAll(strings.Replace(reloaded, "name: mcp", "name: other", 1), "%PORT%", portOf(g.url))), 0o600)
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.cs.CallTool(ctx, &sdk.CallToolParams{Name: "alpha_shout"}); err == nil {
		t.Error("a session of a removed route still answers")
	}
}
