package mcp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// bigText is larger than the gateway's stdout buffer for a stdio target,
// so its line is read in several pieces.
const bigTextBytes = 300 << 10

// progressSteps is how many progress notifications the tool "progress"
// sends before it answers.
const progressSteps = 20

// addStdioTestTools are the tools only the stdio test server has: a
// large answer, a tool error, progress right before the answer, a call that waits for its cancellation
// (leaving mark files when it starts and when it sees it), one that asks
// its client for sampling, and one that kills the server mid-call.
func addStdioTestTools(s *sdk.Server) {
	addEmitTool(s)
	sdk.AddTool(s, &sdk.Tool{Name: "big"}, func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: strings.Repeat("x", bigTextBytes)}}}, nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "failing"}, func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
		return nil, nil, errors.New("the tool failed on purpose")
	})
	sdk.AddTool(s, &sdk.Tool{Name: "block"}, func(ctx context.Context, _ *sdk.CallToolRequest, a struct {
		Mark string `json:"mark"`
	}) (*sdk.CallToolResult, any, error) {
		os.WriteFile(a.Mark+".started", nil, 0o600)
		<-ctx.Done()
		os.WriteFile(a.Mark, []byte("cancelled"), 0o600)
		return nil, nil, ctx.Err()
	})
	sdk.AddTool(s, &sdk.Tool{Name: "progress"}, func(ctx context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
		for i := 1; i <= progressSteps; i++ {
			req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Total: progressSteps})
		}
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "done"}}}, nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "sample"}, func(ctx context.Context, req *sdk.CallToolRequest, a echoArgs) (*sdk.CallToolResult, any, error) {
		res, err := req.Session.CreateMessage(ctx, &sdk.CreateMessageParams{MaxTokens: 10,
			Messages: []*sdk.SamplingMessage{{Role: "user", Content: &sdk.TextContent{Text: a.Text}}}})
		if err != nil {
			return nil, nil, err
		}
		return &sdk.CallToolResult{Content: []sdk.Content{res.Content}}, nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "die"}, func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
		os.Exit(3)
		return nil, nil, nil
	})
}

func TestStdioToolAnswersPassIntact(t *testing.T) {
	g := startGateway(t, federationConfig("conditional", stdioTarget("local", "")))
	cs := connect(t, g.url, nil)
	if got := callText(t, cs, "big", nil); len(got) != bigTextBytes || strings.Trim(got, "x") != "" {
		t.Errorf("big: got %d bytes, want %d x's", len(got), bigTextBytes)
	}
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "failing"})
	if err != nil {
		t.Fatalf("failing: %v", err)
	}
	if !res.IsError || len(res.Content) == 0 || !strings.Contains(res.Content[0].(*sdk.TextContent).Text, "failed on purpose") {
		t.Errorf("failing: got %+v, want a tool error saying why", res)
	}
	// The line follows the answer (the client does not wait for its write).
	g.access.WaitFor(t, "tool_error=true")
	if got := callText(t, cs, "echo", map[string]any{"text": "after"}); got != "local:after" {
		t.Errorf("echo after: %q", got)
	}
}

func TestStdioCallCancelledByTheClientIsCancelledOnTheTarget(t *testing.T) {
	g := startGateway(t, federationConfig("conditional", stdioTarget("local", "")))
	cs := connect(t, g.url, nil)
	mark := filepath.Join(t.TempDir(), "mark")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "block", Arguments: map[string]any{"mark": mark}})
		errc <- err
	}()
	waitFor(t, "the call to reach the target", func() bool {
		_, err := os.Stat(mark + ".started")
		return err == nil
	})
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("a cancelled call succeeded")
	}
	waitFor(t, "the target to see the cancellation", func() bool {
		b, _ := os.ReadFile(mark)
		return string(b) == "cancelled"
	})
	if got := callText(t, cs, "echo", map[string]any{"text": "after"}); got != "local:after" {
		t.Errorf("echo after the cancellation: %q", got)
	}
}

func TestStdioTargetDyingMidCallFailsTheCallAndRestarts(t *testing.T) {
	g := startGateway(t, federationConfig("conditional", stdioTarget("local", "")))
	cs := connect(t, g.url, nil)
	// The deadline only keeps a hanging call from hanging the test.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "die"})
	t.Logf("die call: %v after %v", err, time.Since(t0))
	if err == nil || ctx.Err() != nil {
		t.Fatalf("call to a target that died: err %v, ctx %v; want an error before the deadline", err, ctx.Err())
	}
	if !strings.Contains(err.Error(), `"local"`) {
		t.Errorf("error does not name the target: %v", err)
	}
	waitFor(t, "a call to work again", func() bool {
		res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "back"}})
		return err == nil && !res.IsError && res.Content[0].(*sdk.TextContent).Text == "local:back"
	})
}

func TestStdioProgressSentBeforeTheAnswerAllReachTheClient(t *testing.T) {
	g := startGateway(t, federationConfig("conditional", stdioTarget("local", "")))
	var mu sync.Mutex
	var got []float64
	c := sdk.NewClient(&sdk.Implementation{Name: "test-client", Version: "1"}, &sdk.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
			if r.Params.ProgressToken != "mine" {
				t.Errorf("progress token %v, want the client's own", r.Params.ProgressToken)
			}
			mu.Lock()
			got = append(got, r.Params.Progress)
			mu.Unlock()
		},
	})
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: g.url, MaxRetries: -1, DisableStandaloneSSE: true},
		&sdk.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	for round := 0; round < 5; round++ {
		mu.Lock()
		got = nil
		mu.Unlock()
		p := &sdk.CallToolParams{Name: "progress"}
		p.SetProgressToken("mine")
		if _, err := cs.CallTool(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		// The client hands notifications to its handler on its own
		// goroutine: they may trail the answer here, but none is lost.
		waitFor(t, fmt.Sprintf("all %d progress notifications", progressSteps), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) == progressSteps
		})
	}
}
