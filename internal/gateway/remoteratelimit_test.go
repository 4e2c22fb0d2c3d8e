package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/types/known/durationpb"
)

// rateLimitService is an in-test Envoy rate-limit service: it limits
// requests whose "path" descriptor entry is /limited, and remembers
// every request it was asked about.
type rateLimitService struct {
	rls.UnimplementedRateLimitServiceServer
	mu    sync.Mutex
	seen  []*rls.RateLimitRequest
	conns connCounter
}

func (s *rateLimitService) ShouldRateLimit(_ context.Context, req *rls.RateLimitRequest) (*rls.RateLimitResponse, error) {
	s.mu.Lock()
	s.seen = append(s.seen, req)
	s.mu.Unlock()
	over := false
	for _, d := range req.GetDescriptors() {
		for _, e := range d.GetEntries() {
			if e.GetKey() == "path" && e.GetValue() == "/limited" {
				over = true
			}
		}
	}
	limit := &rls.RateLimitResponse_RateLimit{RequestsPerUnit: 10, Unit: rls.RateLimitResponse_RateLimit_MINUTE}
	resp := &rls.RateLimitResponse{
		OverallCode: rls.RateLimitResponse_OK,
		Statuses: []*rls.RateLimitResponse_DescriptorStatus{
			{Code: rls.RateLimitResponse_OK, CurrentLimit: limit, LimitRemaining: 7, DurationUntilReset: durationpb.New(42e9)},
			{Code: rls.RateLimitResponse_OK, CurrentLimit: limit, LimitRemaining: 3, DurationUntilReset: durationpb.New(30e9)},
		},
		RequestHeadersToAdd:  []*corev3.HeaderValue{{Key: "x-user", Value: "counted"}},
		ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-rls", Value: "ok"}},
	}
	if over {
		resp.OverallCode = rls.RateLimitResponse_OVER_LIMIT
		resp.Statuses = []*rls.RateLimitResponse_DescriptorStatus{{Code: rls.RateLimitResponse_OVER_LIMIT, CurrentLimit: limit, LimitRemaining: 0, DurationUntilReset: durationpb.New(12e9)}}
		resp.ResponseHeadersToAdd = []*corev3.HeaderValue{{Key: "x-rls", Value: "over"}}
		resp.RawBody = []byte("slow down")
	}
	return resp, nil
}

func (s *rateLimitService) requests() []*rls.RateLimitRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*rls.RateLimitRequest(nil), s.seen...)
}

// connCounter counts the gRPC connections a server has open.
type connCounter struct{ open atomic.Int32 }

func (c *connCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *connCounter) HandleRPC(context.Context, stats.RPCStats)                       {}
func (c *connCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (c *connCounter) HandleConn(_ context.Context, s stats.ConnStats) {
	switch s.(type) {
	case *stats.ConnBegin:
		c.open.Add(1)
	case *stats.ConnEnd:
		c.open.Add(-1)
	}
}

// startRateLimitService serves the service over gRPC on a loopback port.
func startRateLimitService(t *testing.T) (*rateLimitService, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &rateLimitService{}
	srv := grpc.NewServer(grpc.StatsHandler(&svc.conns))
	rls.RegisterRateLimitServiceServer(srv, svc)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return svc, ln.Addr().String()
}

func remoteRateLimitPolicy(host, failureMode string) string {
	fm := ""
	if failureMode != "" {
		fm = "\n  failureMode: " + failureMode
	}
	return fmt.Sprintf(`
remoteRateLimit:
  domain: agentgateway
  host: %s%s
  descriptors:
  - entries:
    - key: method
      value: request.method
    - key: path
      value: request.path
    type: requests
  - entries:
    - key: tenant
      value: request.headers["x-tenant"]
    cost: "3"
    limitOverride: '{"unit": "hour", "requestsPerUnit": 100}'`, host, fm)
}

func TestRemoteRateLimitAllowsWithServiceHeaders(t *testing.T) {
	be := echoBackend(t)
	svc, addr := startRateLimitService(t)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), remoteRateLimitPolicy(addr, ""), ""), port)

	code, body, hdr := get(t, g.url("/doc"), "X-Tenant", "acme")
	if code != 200 || !strings.Contains(body, "x-user=counted") {
		t.Fatalf("allowed request: %d %q (want 200 and the service's request header at the backend)", code, body)
	}
	// The most constrained descriptor (3 left) is the one reported.
	if hdr.Get("X-Ratelimit-Limit") != "10" || hdr.Get("X-Ratelimit-Remaining") != "3" || hdr.Get("X-Ratelimit-Reset") != "30" || hdr.Get("X-Rls") != "ok" {
		t.Errorf("allowed response headers: %v", hdr)
	}
	reqs := svc.requests()
	if len(reqs) != 1 {
		t.Fatalf("service asked %d times, want 1", len(reqs))
	}
	r := reqs[0]
	if r.GetDomain() != "agentgateway" || len(r.GetDescriptors()) != 2 {
		t.Fatalf("request to the service: %v", r)
	}
	d0, d1 := r.GetDescriptors()[0], r.GetDescriptors()[1]
	if got := fmt.Sprint(d0.GetEntries()[0].GetKey(), "=", d0.GetEntries()[0].GetValue(), " ", d0.GetEntries()[1].GetKey(), "=", d0.GetEntries()[1].GetValue()); got != "method=GET path=/doc" {
		t.Errorf("first descriptor: %s", got)
	}
	if d0.GetHitsAddend() != nil {
		t.Errorf("a descriptor without cost sent hits_addend %v", d0.GetHitsAddend())
	}
	if d1.GetEntries()[0].GetValue() != "acme" || d1.GetHitsAddend().GetValue() != 3 || d1.GetLimit().GetRequestsPerUnit() != 100 || d1.GetLimit().GetUnit().String() != "HOUR" {
		t.Errorf("second descriptor: %v", d1)
	}

	// Without x-tenant the second descriptor cannot be computed: it is
	// left out and the first still goes.
	get(t, g.url("/doc"))
	reqs = svc.requests()
	if n := len(reqs[1].GetDescriptors()); n != 1 {
		t.Errorf("request without x-tenant sent %d descriptors, want 1: %v", n, reqs[1])
	}
}

func TestRemoteRateLimitOverLimitIs429(t *testing.T) {
	be := echoBackend(t)
	_, addr := startRateLimitService(t)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), remoteRateLimitPolicy(addr, ""), ""), port)
	code, body, hdr := get(t, g.url("/limited"))
	if code != http.StatusTooManyRequests || body != "slow down" {
		t.Fatalf("over limit: %d %q, want 429 with the service's body", code, body)
	}
	if hdr.Get("X-Ratelimit-Limit") != "10" || hdr.Get("X-Ratelimit-Remaining") != "0" || hdr.Get("X-Ratelimit-Reset") != "12" || hdr.Get("X-Rls") != "over" || hdr.Get("X-Backend") != "" {
		t.Errorf("over-limit headers: %v", hdr)
	}
	line := lineWith(g.access.WaitFor(t, "policy=remoteRateLimit"), "policy=remoteRateLimit")
	if !strings.Contains(line, "status=429") {
		t.Errorf("access log: %s", line)
	}
}

func TestRemoteRateLimitUnreachableFailsClosedUnlessFailOpen(t *testing.T) {
	be := echoBackend(t)
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		mode string
		want int
	}{{"", 500}, {"failClosed", 500}, {"failOpen", 200}} {
		port := freePort(t)
		g := startGateway(t, simpleConfig(port, hostOf(be), remoteRateLimitPolicy(dead, tc.mode), ""), port)
		code, body, _ := get(t, g.url("/doc"))
		if code != tc.want {
			t.Errorf("failureMode %q with the service down: %d %q, want %d", tc.mode, code, body, tc.want)
		}
		if tc.want == 500 && strings.Contains(body, dead) {
			t.Errorf("the 500 names the service's address: %q", body)
		}
	}
}

func TestRemoteRateLimitConnectionClosesWhenReloadDropsThePolicy(t *testing.T) {
	be := echoBackend(t)
	svc, addr := startRateLimitService(t)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), remoteRateLimitPolicy(addr, ""), ""), port)
	if code, _, _ := get(t, g.url("/doc")); code != 200 || svc.conns.open.Load() != 1 {
		t.Fatalf("first request: %d with %d connections to the service, want 200 and 1", code, svc.conns.open.Load())
	}
	writeFile(t, g.path, []byte(simpleConfig(port, hostOf(be), "", "")))
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for svc.conns.open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := svc.conns.open.Load(); n != 0 {
		t.Errorf("%d connections to the rate-limit service left open after a reload removed it", n)
	}
}

func TestRemoteRateLimitBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/config.yaml"
	for _, tc := range []struct{ policy, want string }{
		{"remoteRateLimit: {domain: d, host: h:1, descriptors: [{entries: [{key: k, value: request.path}]}], failureMode: sometimes}",
			`config.yaml:9:26: binds[0].listeners[0].routes[0].policies.remoteRateLimit.failureMode: expected failClosed or failOpen, got "sometimes"`},
		{"remoteRateLimit: {domain: d, host: h:1, descriptors: [{entries: [{key: k, valu: request.path}]}]}",
			`config.yaml:9:83: binds[0].listeners[0].routes[0].policies.remoteRateLimit.descriptors[0].entries[0].valu: unknown key`},
		{"remoteRateLimit: {domain: d, host: h:1, descriptors: {entries: []}}",
			`config.yaml:9:62: binds[0].listeners[0].routes[0].policies.remoteRateLimit.descriptors: expected a list`},
		{"remoteRateLimit: {domain: d, descriptors: [{entries: [{key: k, value: request.path}]}]}",
			`config.yaml:9:26: binds[0].listeners[0].routes[0].policies.remoteRateLimit: missing required key "host"`},
		{"remoteRateLimit: {host: h:1, descriptors: [{entries: [{key: k, value: request.path}], type: tokens}]}",
			`missing required key "domain"`},
		{"remoteRateLimit: {domain: d, host: h:1, descriptors: [{entries: [{key: k, value: request.path}], type: tokens}]}",
			`descriptors[0].type: type tokens (LLM token budgets) is not supported by tailgate yet`},
		{"remoteRateLimit: {domain: d, host: h:1, descriptors: [{entries: [{key: k, value: 'request.path +'}]}]}",
			`remoteRateLimit.descriptors[0].entries[0].value`},
		{"remoteRateLimit: {domain: d, host: h:1, descriptors: [{entries: [{key: k, value: response.code}]}]}",
			`remoteRateLimit.descriptors[0].entries[0].value`},
	} {
		os.WriteFile(path, []byte(simpleConfig(1, "127.0.0.1:1", tc.policy, "")), 0o600)
		err := Validate(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.policy, err, tc.want)
		}
	}
}
