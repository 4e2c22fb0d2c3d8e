package mcp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// wireLog is a client transport that records, in the order the client
// read them, the log notifications and the answers it got.
type wireLog struct {
	sdk.Transport
	mu  sync.Mutex
	got []string
}

func (w *wireLog) Connect(ctx context.Context) (sdk.Connection, error) {
	c, err := w.Transport.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &wireLogConn{Connection: c, w: w}, nil
}

type wireLogConn struct {
	sdk.Connection
	w *wireLog
}

func (c *wireLogConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	m, err := c.Connection.Read(ctx)
	var rec string
	switch m := m.(type) {
	case *jsonrpc.Request:
		if m.Method == "notifications/message" {
			rec = "log " + string(m.Params)
		}
	case *jsonrpc.Response:
		rec = "answer " + string(m.Result)
	}
	if rec != "" {
		c.w.mu.Lock()
		c.w.got = append(c.w.got, rec)
		c.w.mu.Unlock()
	}
	return m, err
}

// addEmitTool adds "emit": it logs "line-<n>" to its caller, then
// answers "done-<n>".
func addEmitTool(s *sdk.Server) {
	sdk.AddTool(s, &sdk.Tool{Name: "emit"}, func(ctx context.Context, req *sdk.CallToolRequest, a struct {
		N int `json:"n"`
	}) (*sdk.CallToolResult, any, error) {
		req.Session.Log(ctx, &sdk.LoggingMessageParams{Level: "info", Data: fmt.Sprintf("line-%d", a.N)})
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: fmt.Sprintf("done-%d", a.N)}}}, nil, nil
	})
}

// A target that logs a line to its caller during a tool call, then
// answers: through the gateway, every line reaches the client on that
// call's stream (the client has no standalone stream), before the
// answer, as the MCP streamable HTTP transport asks.
func TestLogDuringCallArrivesBeforeTheAnswer(t *testing.T) {
	s := sdk.NewServer(&sdk.Implementation{Name: "logger", Version: "1"}, nil)
	addEmitTool(s)
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	t.Cleanup(srv.Close)
	for name, target := range map[string]string{
		"http": fmt.Sprintf(`
          - name: logger
            mcp: {host: %q}`, srv.URL+"/mcp"),
		"stdio": stdioTarget("logger", ""),
	} {
		t.Run(name, func(t *testing.T) { checkLogsBeforeAnswers(t, target) })
	}
}

func checkLogsBeforeAnswers(t *testing.T, target string) {
	g := startGateway(t, federationConfig("never", target))
	w := &wireLog{Transport: &sdk.StreamableClientTransport{Endpoint: g.url, MaxRetries: -1, DisableStandaloneSSE: true}}
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "order", Version: "1"}, nil).Connect(context.Background(), w, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	ctx := context.Background()
	if err := cs.SetLoggingLevel(ctx, &sdk.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Fatal(err)
	}
	const calls = 200
	for n := range calls {
		if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "emit", Arguments: map[string]any{"n": n}}); err != nil {
			t.Fatal(err)
		}
	}
	w.mu.Lock()
	got := append([]string(nil), w.got...)
	w.mu.Unlock()
	// Skip what came before the first call (initialize, setLevel).
	for len(got) > 0 && !strings.Contains(got[0], "line-") && !strings.Contains(got[0], "done-") {
		got = got[1:]
	}
	for n := range calls {
		line, answer := fmt.Sprintf(`"line-%d"`, n), fmt.Sprintf("done-%d", n)
		if len(got) < 2 || !strings.Contains(got[0], line) || !strings.Contains(got[1], answer) {
			t.Fatalf("call %d of %d: want its log line then its answer; the client read %.300q", n, calls, got)
		}
		got = got[2:]
	}
}
