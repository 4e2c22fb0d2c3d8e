package gateway

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
)

func shortenLogExport(t *testing.T) {
	old := logExportInterval
	logExportInterval = 50 * time.Millisecond
	t.Cleanup(func() { logExportInterval = old })
}

// waitLog waits for a log record whose path attribute is path.
func (c *otlpCollector) waitLog(t *testing.T, path string) *logspb.LogRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r := c.findLog(path); r != nil {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log record for %s reached the collector (%d records)", path, len(c.logs))
	return nil
}

func (c *otlpCollector) findLog(path string) *logspb.LogRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.logs {
		if attrMap(r.Attributes)["path"] == path {
			return r
		}
	}
	return nil
}

// agentgateway's examples/mcp-telemetry/logging/otel.yaml: tracing and
// the OTLP access log to the same collector's gRPC port.
func TestAccessLogExportsOTLPRecordsOverGRPC(t *testing.T) {
	shortenLogExport(t)
	shortenTraceBatch(t)
	col := startCollector(t, true)
	be := tracedEcho(t)
	port := freePort(t)
	host := strings.TrimPrefix(col.URL, "http://")
	g := startGateway(t, simpleConfig(port, hostOf(be), "", fmt.Sprintf(`tracing:
  host: %s
  randomSampling: true
accessLog:
  add:
    user.agent: 'request.headers["user-agent"]'
    status.class: 'string(response.code / 100) + "xx"'
  otlp:
    host: %s`, host, host)), port)
	get(t, g.url("/hello"), "User-Agent", "probe/1")
	rec := col.waitLog(t, "/hello")
	attrs := attrMap(rec.Attributes)
	for k, want := range map[string]string{"user.agent": "probe/1", "status.class": "2xx", "status": "200", "method": "GET", "route": "default/app"} {
		if attrs[k] != want {
			t.Errorf("record attribute %s = %q, want %q (all: %v)", k, attrs[k], want, attrs)
		}
	}
	if rec.SeverityText != "INFO" || rec.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_INFO || rec.GetBody().GetStringValue() != "request" {
		t.Errorf("record severity/body: %s %v %v", rec.SeverityText, rec.SeverityNumber, rec.GetBody())
	}
	// The record belongs to the request's trace.
	span := col.waitSpan(t, "GET /*")
	if hex.EncodeToString(rec.TraceId) != hex.EncodeToString(span.TraceId) || hex.EncodeToString(rec.SpanId) != hex.EncodeToString(span.SpanId) {
		t.Errorf("record trace %x/%x, span %x/%x", rec.TraceId, rec.SpanId, span.TraceId, span.SpanId)
	}
	if attrs["trace.id"] != hex.EncodeToString(span.TraceId) {
		t.Errorf("trace.id attribute = %q", attrs["trace.id"])
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if col.res["service.name"] != "tailgate" {
		t.Errorf("resource service.name = %q", col.res["service.name"])
	}
}

// The otlp block's own filter and fields replace the access log's for
// the records only; the stdout line keeps the access log's.
func TestAccessLogOTLPHasItsOwnFilterAndFields(t *testing.T) {
	shortenLogExport(t)
	col := startCollector(t, false)
	be := echoBackend(t)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), "", fmt.Sprintf(`accessLog:
  add:
    parent.field: '"p"'
  otlp:
    host: %s
    protocol: http
    filter: 'request.path != "/quiet"'
    fields:
      add:
        otlp.only: 'request.path + "!"'
      remove: [src]`, col.URL)), port)
	get(t, g.url("/quiet"))
	g.access.WaitFor(t, "path=/quiet") // written after its record would be
	get(t, g.url("/loud"))
	attrs := attrMap(col.waitLog(t, "/loud").Attributes)
	if attrs["otlp.only"] != "/loud!" {
		t.Errorf("otlp field missing: %v", attrs)
	}
	if _, ok := attrs["parent.field"]; ok {
		t.Errorf("the access log's fields were used although otlp.fields is set: %v", attrs)
	}
	if _, ok := attrs["src"]; ok {
		t.Errorf("src not removed: %v", attrs)
	}
	if col.findLog("/quiet") != nil {
		t.Error("the otlp filter did not keep /quiet out")
	}
	line := lineWith(g.access.WaitFor(t, "path=/loud"), "path=/loud")
	if !strings.Contains(line, "parent.field=p") || strings.Contains(line, "otlp.only") {
		t.Errorf("stdout line shaped by the otlp block: %s", line)
	}
}

func TestAccessLogOTLPBadInputNamesPathAndLine(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ otlp, want string }{
		{"{protocol: http}", `3:11: frontendPolicies.accessLog.otlp: missing required key "host"`},
		{"{host: [a]}", `3:18: frontendPolicies.accessLog.otlp.host: expected a string, got a list`},
		{"{host: 'c:4317', protocol: udp}", `3:11: frontendPolicies.accessLog.otlp.protocol: expected grpc or http, got "udp"`},
		{"{host: 'ftp://c'}", `frontendPolicies.accessLog.otlp.host: expected an http:// or https:// collector URL`},
		{"{host: 'c:4317', hots: x}", `3:28: frontendPolicies.accessLog.otlp.hots: unknown key`},
		{"{host: 'c:4317', service: {name: x, port: 1}}", `frontendPolicies.accessLog.otlp.service: not supported by tailgate yet`},
		{"{host: 'c:4317', filter: 'request.nope =='}", `frontendPolicies.accessLog.otlp.filter`},
		{"{host: 'c:4317', fields: {add: {a: 'jwt.'}}}", `frontendPolicies.accessLog.otlp.fields.add.a`},
		{"{host: 'c:4317', fields: {drop: [a]}}", `frontendPolicies.accessLog.otlp.fields.drop: unknown key`},
	} {
		cfg := "frontendPolicies:\n  accessLog:\n    otlp: " + tc.otlp + "\n" + simpleConfig(3000, "127.0.0.1:1", "", "")
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		err := Validate(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("otlp %s: error %v, want one with %q", tc.otlp, err, tc.want)
		}
	}
}
