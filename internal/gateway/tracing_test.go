package gateway

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpCollector is an in-test OpenTelemetry collector: it decodes OTLP
// export requests of spans and log records (protobuf over HTTP at
// /v1/traces and /v1/logs, or gRPC over h2c) and keeps them with their
// resource attributes.
type otlpCollector struct {
	*httptest.Server
	mu      sync.Mutex
	spans   []*tracepb.Span
	logs    []*logspb.LogRecord
	res     map[string]string
	headers http.Header
}

func startCollector(t *testing.T, grpc bool) *otlpCollector {
	t.Helper()
	c := &otlpCollector{res: map[string]string{}}
	c.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		logs := false
		switch {
		case grpc && (r.URL.Path == otlpGRPCPath || r.URL.Path == otlpGRPCLogsPath) && r.ProtoMajor == 2 && r.Header.Get("Content-Type") == "application/grpc":
			if len(body) < 5 || int(binary.BigEndian.Uint32(body[1:5])) != len(body)-5 {
				http.Error(w, "bad gRPC frame", http.StatusBadRequest)
				return
			}
			body, logs = body[5:], r.URL.Path == otlpGRPCLogsPath
		case !grpc && (r.URL.Path == "/v1/traces" || r.URL.Path == "/v1/logs") && r.Header.Get("Content-Type") == "application/x-protobuf":
			logs = r.URL.Path == "/v1/logs"
		default:
			t.Errorf("collector: unexpected %s %s %s (%s)", r.Proto, r.Method, r.URL.Path, r.Header.Get("Content-Type"))
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		var req, answer proto.Message = &coltrace.ExportTraceServiceRequest{}, &coltrace.ExportTraceServiceResponse{}
		if logs {
			req, answer = &collogs.ExportLogsServiceRequest{}, &collogs.ExportLogsServiceResponse{}
		}
		if err := proto.Unmarshal(body, req); err != nil {
			t.Errorf("collector: %v", err)
		}
		c.mu.Lock()
		c.headers = r.Header.Clone()
		keepResource := func(res *resourcepb.Resource) {
			for k, v := range attrMap(res.GetAttributes()) {
				c.res[k] = v
			}
		}
		switch req := req.(type) {
		case *collogs.ExportLogsServiceRequest:
			for _, rl := range req.ResourceLogs {
				keepResource(rl.GetResource())
				for _, sl := range rl.ScopeLogs {
					c.logs = append(c.logs, sl.LogRecords...)
				}
			}
		case *coltrace.ExportTraceServiceRequest:
			for _, rs := range req.ResourceSpans {
				keepResource(rs.GetResource())
				for _, ss := range rs.ScopeSpans {
					c.spans = append(c.spans, ss.Spans...)
				}
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(answer)
		if grpc {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Trailer", "Grpc-Status")
			frame := make([]byte, 5, 5+len(out))
			binary.BigEndian.PutUint32(frame[1:5], uint32(len(out)))
			w.Write(append(frame, out...))
			w.Header().Set("Grpc-Status", "0")
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	if grpc {
		c.Config.Protocols = new(http.Protocols)
		c.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	c.Start()
	t.Cleanup(c.Close)
	return c
}

// waitSpan waits for a span with the given name.
func (c *otlpCollector) waitSpan(t *testing.T, name string) *tracepb.Span {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, s := range c.spans {
			if s.Name == name {
				c.mu.Unlock()
				return s
			}
		}
		c.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for _, s := range c.spans {
		names = append(names, s.Name)
	}
	t.Fatalf("no span %q reached the collector; got %q", name, names)
	return nil
}

func (c *otlpCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.spans)
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.Key] = x.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = fmt.Sprint(x.IntValue)
		case *commonpb.AnyValue_BoolValue:
			m[kv.Key] = fmt.Sprint(x.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			m[kv.Key] = fmt.Sprint(x.DoubleValue)
		}
	}
	return m
}

func shortenTraceBatch(t *testing.T) {
	old := traceBatchTimeout
	traceBatchTimeout = 50 * time.Millisecond
	t.Cleanup(func() { traceBatchTimeout = old })
}

// tracedEcho is a backend that answers with the traceparent it received.
func tracedEcho(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("Traceparent"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestTracingExportsServerSpanOverOTLPHTTP(t *testing.T) {
	shortenTraceBatch(t)
	col := startCollector(t, false)
	be := tracedEcho(t)
	port := freePort(t)
	cfg := simpleConfig(port, hostOf(be), "", fmt.Sprintf(`tracing:
  host: %s
  protocol: http
  randomSampling: 'request.path != "/api/unsampled"'
  attributes:
    user.agent: 'request.headers["user-agent"]'
    status.class: 'string(response.code / 100) + "xx"'
  remove: [duration]
  resources:
    service.name: '"edge-gw"'`, hostOf(col.Server)))
	cfg = strings.Replace(cfg, "    - name: app\n", "    - name: app\n      matches: [{path: {pathPrefix: /api}}]\n", 1)
	g := startGateway(t, cfg, port)

	// A caller's trace is continued: same trace, the caller's span is the parent.
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	_, got, _ := get(t, g.url("/api/items"), "Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01", "User-Agent", "probe/1")
	span := col.waitSpan(t, "GET /api/*")
	if hex.EncodeToString(span.TraceId) != callerTrace || hex.EncodeToString(span.ParentSpanId) != callerSpan {
		t.Errorf("span trace %x parent %x; want the caller's %s / %s", span.TraceId, span.ParentSpanId, callerTrace, callerSpan)
	}
	if span.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("span kind %v, want server", span.Kind)
	}
	// The backend is told the gateway's span, child of the caller's.
	if want := "00-" + callerTrace + "-" + hex.EncodeToString(span.SpanId) + "-01"; got != want {
		t.Errorf("backend got traceparent %q, want %q", got, want)
	}
	attrs := attrMap(span.Attributes)
	for k, want := range map[string]string{
		"gateway": fmt.Sprintf("bind/%d", port), "listener": "default", "http.method": "GET",
		"http.path": "/api/items", "http.status": "200", "http.version": "HTTP/1.1",
		"url.scheme": "http", "network.protocol.version": "1.1", "endpoint": hostOf(be),
		"trace.id": callerTrace, "span.id": hex.EncodeToString(span.SpanId),
		"user.agent": "probe/1", "status.class": "2xx",
	} {
		if attrs[k] != want {
			t.Errorf("span attribute %s = %q, want %q", k, attrs[k], want)
		}
	}
	if !strings.HasSuffix(attrs["route"], "app") {
		t.Errorf("span attribute route = %q", attrs["route"])
	}
	if _, ok := attrs["duration"]; ok {
		t.Error("remove: [duration] left the attribute in")
	}
	col.mu.Lock()
	if col.res["service.name"] != "edge-gw" {
		t.Errorf("resource service.name = %q, want edge-gw", col.res["service.name"])
	}
	col.mu.Unlock()

	// Without a caller's trace, randomSampling decides; no span, no traceparent.
	if _, got, _ := get(t, g.url("/api/unsampled")); got != "" {
		t.Errorf("an unsampled request reached the backend with traceparent %q", got)
	}
	get(t, g.url("/api/fresh"))
	deadline := time.Now().Add(5 * time.Second)
	for col.count() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if n := col.count(); n != 2 {
		t.Errorf("collector has %d spans, want 2 (the unsampled request must not be traced)", n)
	}
}

// agentgateway's default protocol is gRPC (the collector's :4317); tailgate
// speaks it over HTTP/2 without the gRPC library.
func TestTracingExportsOverOTLPGRPCByDefault(t *testing.T) {
	shortenTraceBatch(t)
	col := startCollector(t, true)
	be := tracedEcho(t)
	port := freePort(t)
	cfg := fmt.Sprintf("config:\n  tracing:\n    otlpEndpoint: %s\n    randomSampling: true\n    headers: {x-api-key: secret1}\n    fields:\n      add:\n        span.name: '\"custom \" + request.path'\n", col.URL) +
		simpleConfig(port, hostOf(be), "", "")
	g := startGateway(t, cfg, port)
	get(t, g.url("/x"))
	span := col.waitSpan(t, "custom /x")
	if attrMap(span.Attributes)["http.path"] != "/x" {
		t.Errorf("span attributes: %v", attrMap(span.Attributes))
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if col.headers.Get("X-Api-Key") != "secret1" {
		t.Errorf("config.tracing.headers not sent as gRPC metadata: %v", col.headers)
	}
	if col.res["service.name"] != "tailgate" {
		t.Errorf("resource service.name = %q", col.res["service.name"])
	}
}

func TestTracingBadInputNamesPathAndLine(t *testing.T) {
	for _, tc := range []struct{ cfg, want string }{
		{"frontendPolicies:\n  tracing: {host: 'x:4317', protocl: http}\n", `2:29: frontendPolicies.tracing.protocl: unknown key`},
		{"frontendPolicies:\n  tracing: {host: 'x:4317', protocol: thrift}\n", `frontendPolicies.tracing.protocol: expected grpc or http, got "thrift"`},
		{"frontendPolicies:\n  tracing: {host: 'x:4317', randomSampling: 2}\n", `2:45: frontendPolicies.tracing.randomSampling: expected a fraction between 0 and 1, got 2`},
		{"frontendPolicies:\n  tracing: {host: 'x:4317', randomSampling: [1]}\n", `frontendPolicies.tracing.randomSampling: expected true, false, a fraction`},
		{"frontendPolicies:\n  tracing: {host: 'x:4317', attributes: {a: 'nosuch.x'}}\n", `frontendPolicies.tracing.attributes.a`},
		{"frontendPolicies:\n  tracing: {randomSampling: true}\n", `frontendPolicies.tracing: missing required key "host"`},
		{"config:\n  tracing: {otlpEndpoint: 'localhost:4317'}\n", `2:12: config.tracing.otlpEndpoint: expected an http:// or https:// collector URL`},
		{"config:\n  tracing: {otlpEndpoint: 'http://c:4317', fields: {add: {a: 1}, drop: [x]}}\n", `config.tracing.fields.drop: unknown key`},
	} {
		port := freePort(t)
		path := t.TempDir() + "/c.yaml"
		writeFile(t, path, []byte(tc.cfg+simpleConfig(port, "127.0.0.1:1", "", "")))
		err := Validate(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.cfg, err, tc.want)
		}
	}
}
