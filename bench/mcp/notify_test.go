package mcp_bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkHTTPTarget: a streamable HTTP target (an in-process Go SDK
// server), directly and through the gateway:
//   - tools/call p50/p99 of an echo tool;
//   - notification latency: the target's tool "emit" logs its clock as
//     the message, and the client measures emit → receive.
func BenchmarkHTTPTarget(b *testing.B) {
	s := sdk.NewServer(&sdk.Implementation{Name: "bench", Version: "1"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "echo"}, func(_ context.Context, _ *sdk.CallToolRequest, in struct {
		Text string `json:"text"`
	}) (*sdk.CallToolResult, struct{}, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: in.Text}}}, struct{}{}, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "emit"}, func(ctx context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, struct{}, error) {
		req.Session.Log(ctx, &sdk.LoggingMessageParams{Level: "info", Data: strconv.FormatInt(time.Now().UnixNano(), 10)})
		return &sdk.CallToolResult{Content: []sdk.Content{}}, struct{}{}, nil
	})
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	defer srv.Close()

	viaGateway := startGatewayTo(b, fmt.Sprintf("\n            mcp: {host: %q}", srv.URL+"/mcp"))

	measure := func(url string) (c50, c99, n50, n99 time.Duration) {
		got := make(chan time.Duration, 1)
		c := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, &sdk.ClientOptions{
			LoggingMessageHandler: func(_ context.Context, r *sdk.LoggingMessageRequest) {
				if ns, err := strconv.ParseInt(fmt.Sprint(r.Params.Data), 10, 64); err == nil {
					got <- time.Since(time.Unix(0, ns))
				}
			},
		})
		cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: url}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer cs.Close()
		cs.SetLoggingLevel(context.Background(), &sdk.SetLoggingLevelParams{Level: "info"})
		timeCalls(b, cs, 200)
		c50, c99 = percentiles(timeCalls(b, cs, 2000))
		var lat []time.Duration
		for i := 0; i < 500; i++ {
			if _, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "emit"}); err != nil {
				b.Fatal(err)
			}
			select {
			case d := <-got:
				lat = append(lat, d)
			case <-time.After(5 * time.Second):
				b.Fatalf("no notification from %s after %d", url, i)
			}
		}
		n50, n99 = percentiles(lat)
		return
	}
	for i := 0; i < b.N; i++ {
		dc50, dc99, dn50, dn99 := measure(srv.URL + "/mcp")
		gc50, gc99, gn50, gn99 := measure(viaGateway)
		b.ReportMetric(float64(dc50.Microseconds()), "direct-call-p50-µs")
		b.ReportMetric(float64(dc99.Microseconds()), "direct-call-p99-µs")
		b.ReportMetric(float64(gc50.Microseconds()), "gateway-call-p50-µs")
		b.ReportMetric(float64(gc99.Microseconds()), "gateway-call-p99-µs")
		b.ReportMetric(float64(dn50.Microseconds()), "direct-notify-p50-µs")
		b.ReportMetric(float64(dn99.Microseconds()), "direct-notify-p99-µs")
		b.ReportMetric(float64(gn50.Microseconds()), "gateway-notify-p50-µs")
		b.ReportMetric(float64(gn99.Microseconds()), "gateway-notify-p99-µs")
	}
}
