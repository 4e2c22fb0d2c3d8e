package mcp_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/testtcp"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tailgate-dev/tailgate/internal/gateway"
	"github.com/tailgate-dev/tailgate/internal/testlog"
)

// The test binary doubles as a stdio MCP server: TestMain runs it when
// MCPTEST_SERVER names the server (the gateway passes it through env:).
func TestMain(m *testing.M) {
	if name := os.Getenv("MCPTEST_SERVER"); name != "" {
		runStdioServer(name)
		return
	}
	os.Exit(m.Run())
}

type echoArgs struct {
	Text string `json:"text"`
}

func addTestTools(s *sdk.Server, name string, extra ...string) {
	sdk.AddTool(s, &sdk.Tool{Name: "echo", Description: "echo from " + name}, func(ctx context.Context, _ *sdk.CallToolRequest, a echoArgs) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: name + ":" + a.Text}}}, nil, nil
	})
	for _, tool := range extra {
		sdk.AddTool(s, &sdk.Tool{Name: tool}, func(ctx context.Context, _ *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
			out := name + ":" + tool
			switch tool {
			case "pid":
				out = strconv.Itoa(os.Getpid())
			case "environ":
				out = strings.Join(os.Environ(), "\n")
			}
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: out}}}, nil, nil
		})
	}
	s.AddPrompt(&sdk.Prompt{Name: "greet"}, func(ctx context.Context, r *sdk.GetPromptRequest) (*sdk.GetPromptResult, error) {
		return &sdk.GetPromptResult{Messages: []*sdk.PromptMessage{{Role: "user", Content: &sdk.TextContent{Text: "hello from " + name}}}}, nil
	})
	s.AddResource(&sdk.Resource{Name: name + "-readme", URI: "test://" + name + "/readme", MIMEType: "text/plain"}, func(ctx context.Context, r *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
		return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{{URI: r.Params.URI, Text: "readme of " + name}}}, nil
	})
}

func runStdioServer(name string) {
	s := sdk.NewServer(&sdk.Implementation{Name: name, Version: "1"}, nil)
	addTestTools(s, name, "pid", "environ", name+"_only")
	addStdioTestTools(s)
	if err := s.Run(context.Background(), &sdk.StdioTransport{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// httpTarget is a streamable HTTP MCP server on loopback.
func httpTarget(t testing.TB, name string) string {
	s := sdk.NewServer(&sdk.Implementation{Name: name, Version: "1"}, nil)
	addTestTools(s, name, name+"_only")
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

// stdioTarget is the YAML of a stdio target running this test binary.
func stdioTarget(name string, extra string) string {
	exe, _ := os.Executable()
	return fmt.Sprintf(`
          - name: %s
            stdio:
              cmd: %q
              env: {MCPTEST_SERVER: %s, SECRET_NOT_PASSED: "visible-only-if-named"}%s`, name, exe, name, extra)
}

func freePort(t testing.TB) int { return testtcp.FreePort(t) }

type gw struct {
	*gateway.Gateway
	path   string
	url    string
	access *testlog.Buffer
	ops    *testlog.Buffer
}

// startGateway writes cfg (with %PORT% replaced) and serves it on loopback.
func startGateway(t testing.TB, cfg string) *gw {
	t.Helper()
	port := freePort(t)
	cfg = strings.ReplaceAll(cfg, "%PORT%", strconv.Itoa(port))
	return startGatewayFile(t, []byte(cfg), port)
}

func startGatewayFile(t testing.TB, data []byte, port int) *gw {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	access, ops := &testlog.Buffer{}, &testlog.Buffer{}
	g, err := gateway.New(gateway.Options{
		ConfigPath: path, BindHost: "127.0.0.1", AdminAddr: "127.0.0.1:0", ReloadInterval: -1,
		AccessLog: access, Logger: slog.New(slog.NewTextHandler(ops, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return &gw{Gateway: g, path: path, url: fmt.Sprintf("http://127.0.0.1:%d/mcp", port), access: access, ops: ops}
}

// connect opens a Go SDK client session through the gateway.
func connect(t testing.TB, url string, hc *http.Client) *sdk.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := sdk.NewClient(&sdk.Implementation{Name: "test-client", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true},
		&sdk.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func toolNames(t testing.TB, cs *sdk.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var out []string
	for _, tl := range res.Tools {
		out = append(out, tl.Name)
	}
	return out
}

func callText(t testing.TB, cs *sdk.ClientSession, name string, args any) string {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("tools/call %s: %v", name, err)
	}
	return resultText(res)
}

// resultText is the text contents of a tool's result, joined.
func resultText(res *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func newLoopbackServer(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

var sdkCallPID = sdk.CallToolParams{Name: "pid"}
