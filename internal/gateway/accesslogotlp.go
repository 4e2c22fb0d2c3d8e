package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// logExportInterval is how long access-log records wait to be exported
// together (the OpenTelemetry SDK's default); tests shorten it.
var logExportInterval = time.Second

// otlpLogSpec is frontendPolicies.accessLog.otlp compiled: agentgateway's
// OTLP access log. Each request is one log record (severity INFO, body
// "request", scope "tailgate.access") whose attributes are the access
// log's fields, shaped by the OTLP block's own filter and fields or,
// where it has none, by the access log's. A traced request's record
// carries its trace and span id. Records are batched and exported over
// OTLP/gRPC or OTLP/HTTP; the exporter starts on the first record, so
// Validate starts nothing.
type otlpLogSpec struct {
	export    config.TraceExport
	shape     *accessLogSpec
	resources []attribute.KeyValue

	once     sync.Once
	provider *sdklog.LoggerProvider
	logger   otellog.Logger
}

func (c *compiler) accessLogOTLP(a *config.AccessLog, parent *accessLogSpec, tracing *tracingSpec) *otlpLogSpec {
	o := a.OTLP
	const path = "frontendPolicies.accessLog.otlp"
	shape := &accessLogSpec{remove: map[string]bool{}}
	if parent != nil {
		*shape = *parent
	}
	if o.Filter != "" {
		shape.filter = c.Expression(cel.Log, o.Pos, path+".filter", o.Filter)
	}
	if f := o.Fields; f != nil {
		shape.add, shape.remove = nil, map[string]bool{}
		for _, e := range f.Add {
			shape.add = append(shape.add, logField{e.Name, c.Expression(cel.Log, e.Pos, path+".fields.add."+e.Name, e.Expr)})
		}
		for _, r := range f.Remove {
			shape.remove[r] = true
		}
	}
	spec := &otlpLogSpec{export: o.Export(), shape: shape}
	if tracing != nil {
		spec.resources = tracing.resources // one service, however it is observed
	}
	return spec
}

func (o *otlpLogSpec) start() otellog.Logger {
	o.once.Do(func() {
		opts := []otlploghttp.Option{otlploghttp.WithEndpointURL(o.export.URL + o.export.Path)}
		if len(o.export.Headers) > 0 {
			opts = append(opts, otlploghttp.WithHeaders(o.export.Headers))
		}
		if o.export.Protocol == "grpc" {
			opts = append(opts, otlploghttp.WithHTTPClient(&http.Client{Transport: newOTLPGRPC(otlpGRPCLogsPath), Timeout: 10 * time.Second}))
		}
		// New only fails on bad options; the URL was checked at load.
		exp, _ := otlploghttp.New(context.Background(), opts...)
		attrs := append([]attribute.KeyValue{attribute.String("service.name", "tailgate")}, o.resources...)
		o.provider = sdklog.NewLoggerProvider(
			sdklog.WithProcessor(sdklog.NewBatchProcessor(exp, sdklog.WithExportInterval(logExportInterval))),
			sdklog.WithResource(resource.NewSchemaless(attrs...)),
		)
		o.logger = o.provider.Logger("tailgate.access")
	})
	return o.logger
}

// close exports what is buffered and stops the exporter.
func (o *otlpLogSpec) close() {
	if o == nil {
		return
	}
	o.once.Do(func() {}) // an exporter never started stays unstarted
	if o.provider != nil {
		shutdownOTLP(o.provider.Shutdown)
	}
}

// emit exports one request's record; attrs are the access log's built-in
// fields (left as they are: the stdout line shapes its own copy).
func (o *otlpLogSpec) emit(attrs []slog.Attr, vars func() cel.Vars, rt *requestTrace, at time.Time) {
	if o == nil {
		return
	}
	attrs, ok := o.shape.shape(slices.Clone(attrs), vars)
	if !ok {
		return
	}
	var rec otellog.Record
	rec.SetTimestamp(at)
	rec.SetSeverity(otellog.SeverityInfo)
	rec.SetSeverityText("INFO")
	rec.SetBody(otellog.StringValue("request"))
	kvs := make([]otellog.KeyValue, 0, len(attrs)+2)
	for _, a := range attrs {
		kvs = append(kvs, otellog.KeyValue{Key: a.Key, Value: logValue(a.Value)})
	}
	ctx := context.Background()
	if rt != nil {
		sc := rt.span.SpanContext()
		ctx = trace.ContextWithSpanContext(ctx, sc)
		kvs = append(kvs, otellog.String("trace.id", sc.TraceID().String()), otellog.String("span.id", sc.SpanID().String()))
	}
	rec.AddAttributes(kvs...)
	o.start().Emit(ctx, rec)
}

// logValue is an access-log value as an OTLP attribute value; maps and
// lists (CEL values) are JSON text, as in spans.
func logValue(v slog.Value) otellog.Value {
	switch v.Kind() {
	case slog.KindString:
		return otellog.StringValue(v.String())
	case slog.KindInt64:
		return otellog.Int64Value(v.Int64())
	case slog.KindUint64:
		return otellog.Int64Value(int64(v.Uint64()))
	case slog.KindFloat64:
		return otellog.Float64Value(v.Float64())
	case slog.KindBool:
		return otellog.BoolValue(v.Bool())
	}
	switch x := v.Any().(type) {
	case string:
		return otellog.StringValue(x)
	case int64:
		return otellog.Int64Value(x)
	case float64:
		return otellog.Float64Value(x)
	case bool:
		return otellog.BoolValue(x)
	}
	b, err := json.Marshal(v.Any())
	if err != nil {
		return otellog.StringValue(fmt.Sprint(v.Any()))
	}
	return otellog.StringValue(string(b))
}
