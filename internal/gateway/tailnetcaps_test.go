package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"tailscale.com/tailcfg"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

func TestCapsFromWhoIsCapMap(t *testing.T) {
	caps := capsOf(tailcfg.PeerCapMap{
		"example.com/cap/mcp":  {`{"tools":["echo"]}`, `{"tools":["add"]}`},
		"example.com/cap/none": nil,
		"example.com/cap/bad":  {`not json`},
	})
	b, _ := json.Marshal(caps)
	if want := `{"example.com/cap/bad":[],"example.com/cap/mcp":[{"tools":["echo"]},{"tools":["add"]}],"example.com/cap/none":[]}`; string(b) != want {
		t.Fatalf("caps = %s\nwant %s", b, want)
	}
	if v := (&TailscaleIdentity{}).vars()["caps"]; v == nil {
		t.Fatal("an identity without caps must still have an empty caps map")
	}
}

// mcpToolsServer is a streamable-HTTP MCP server with the tools echo and add.
func mcpToolsServer(t *testing.T) string {
	s := sdk.NewServer(&sdk.Implementation{Name: "tools", Version: "1"}, nil)
	for _, name := range []string{"echo", "add"} {
		sdk.AddTool(s, &sdk.Tool{Name: name}, func(ctx context.Context, _ *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "called " + name}}}, nil, nil
		})
	}
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

// TestTailnetGrantCapsDecideMCPTools is the README's example: the tailnet
// policy grants the caller `example.com/cap/mcp` with the tools it may
// call, and an mcpAuthorization rule over source.tailscale.caps enforces
// it — in tools/list and in tools/call. The grants are written into the
// sandbox's tailnet policy, whose "app" blocks reach the gateway's packet
// filter and so WhoIs's CapMap, as on Tailscale.
func TestTailnetGrantCapsDecideMCPTools(t *testing.T) {
	sb := tailnetSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ttl := whoisTTL
	whoisTTL = 0 // every connection asks WhoIs: the test changes grants
	t.Cleanup(func() { whoisTTL = ttl })

	target := mcpToolsServer(t)
	cfg := fmt.Sprintf(`
tailnet:
  hostname: gateway
  controlURL: %s
  authKey: {env: TAILGATE_TEST_AUTHKEY}
  ephemeral: true
binds:
- port: 3000
  tailnet: true
  listeners:
  - routes:
    - name: mcp
      policies:
        mcpAuthorization:
          rules:
          - 'source.tailscale.caps["example.com/cap/mcp"].exists(c, mcp.tool.name in c.tools)'
      backends:
      - mcp:
          targets:
          - name: tools
            mcp: {host: %q}
`, sb.ControlURL(), target)
	g := startGateway(t, cfg, freePort(t))
	gwIP, ok := g.TailnetIPv4()
	if !ok {
		t.Fatal("gateway did not join the tailnet")
	}
	caller, err := sb.NewNode(ctx, sandbox.NodeOptions{Hostname: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s:3000/mcp", gwIP)
	session := func() *sdk.ClientSession {
		c := sdk.NewClient(&sdk.Implementation{Name: "agent", Version: "1"}, nil)
		cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: url, HTTPClient: tailnetClient(caller), MaxRetries: -1, DisableStandaloneSSE: true}, nil)
		if err != nil {
			t.Fatalf("connect through the tailnet: %v", err)
		}
		t.Cleanup(func() { cs.Close() })
		return cs
	}
	tools := func(cs *sdk.ClientSession) string { return sessionToolNames(t, cs) }

	// No grant: the capability is absent, the rule cannot be true.
	if got := tools(session()); got != "" {
		t.Fatalf("without the grant the caller sees tools %q", got)
	}

	// The grant {"tools": ["echo"]}: echo is listed and callable, add is not.
	sb.API().SetPolicy([]byte(mcpGrantPolicy(`{"tools":["echo"]}`)))
	var cs *sdk.ClientSession
	for deadline := time.Now().Add(time.Minute); ; {
		cs = session()
		if tools(cs) == "echo" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grant never reached the gateway: tools %q", tools(cs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo"})
	if err != nil || res.IsError {
		t.Fatalf("echo: %v %+v", err, res)
	}
	if res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "add"}); err == nil && !res.IsError {
		t.Fatal("add was called without a grant for it")
	}

	// Grants change, the next connection's WhoIs says so.
	sb.API().SetPolicy([]byte(mcpGrantPolicy(`{"tools":["echo"]}`, `{"tools":["add"]}`)))
	for deadline := time.Now().Add(time.Minute); tools(session()) != "add,echo"; {
		if time.Now().After(deadline) {
			t.Fatal("second grant never reached the gateway")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mcpGrantPolicy is a tailnet policy that lets every node reach every
// other and grants every node the MCP capability values given.
func mcpGrantPolicy(values ...string) string {
	return fmt.Sprintf(`{"grants": [
		{"src": ["*"], "dst": ["*"], "ip": ["*"]},
		{"src": ["*"], "dst": ["*"], "app": {"example.com/cap/mcp": [%s]}},
	]}`, strings.Join(values, ", "))
}
