package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// traceBatchTimeout is how long finished spans wait to be exported
// together (the OpenTelemetry SDK's default); tests shorten it.
var traceBatchTimeout = 5 * time.Second

// tracingSpec is config.tracing / frontendPolicies.tracing compiled:
// agentgateway's Tracer and TraceSampler. A request carrying a
// traceparent is traced when clientSampling says so (default: always),
// one without when randomSampling does (default: never). A traced request
// gets a server span, child of the caller's, whose context is sent to
// the backend as traceparent; the span is exported over OTLP when the
// response is done, with the access log's fields under agentgateway's
// names, unless filter says otherwise.
type tracingSpec struct {
	export    config.TraceExport
	resources []attribute.KeyValue
	random    sampler
	client    sampler
	filter    *cel.Expression
	add       []logField
	remove    map[string]bool

	// The exporter starts on the first sampled request, so Validate and
	// configs that never trace start nothing.
	once     sync.Once
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
}

// sampler is a StringBoolFloat: a constant fraction, or CEL giving a bool
// or a fraction. An expression that errors does not sample.
type sampler struct {
	set      bool
	constant float64
	x        *cel.Expression
}

func (s sampler) sample(vars func() cel.Vars, dflt bool) bool {
	if !s.set {
		return dflt
	}
	f := s.constant
	if s.x != nil {
		v, err := s.x.Native(vars())
		if err != nil {
			return false
		}
		switch v := v.(type) {
		case bool:
			return v
		case float64:
			f = v
		case int64:
			f = float64(v)
		default:
			return false
		}
	}
	return f >= 1 || (f > 0 && rand.Float64() < f)
}

func (c *compiler) sampler(s *config.Sampling, path string) sampler {
	if s == nil {
		return sampler{}
	}
	switch s.Expr {
	case "true":
		return sampler{set: true, constant: 1}
	case "false":
		return sampler{set: true}
	}
	if f, err := strconv.ParseFloat(s.Expr, 64); err == nil {
		return sampler{set: true, constant: f}
	}
	return sampler{set: true, x: c.Expression(cel.Request, s.Pos, path, s.Expr)}
}

// tracing compiles the file's tracing blocks; nil when neither is set.
// frontendPolicies.tracing wins over config.tracing; a sampling setting
// it leaves out comes from config.tracing.
func (c *compiler) tracing(f *config.File) *tracingSpec {
	var ct *config.Tracing
	if f.Config != nil {
		ct = f.Config.Tracing
	}
	var ft *config.FrontendTracing
	if f.FrontendPolicies != nil {
		ft = f.FrontendPolicies.Tracing
	}
	if ct == nil && ft == nil {
		return nil
	}
	t := &tracingSpec{remove: map[string]bool{}}
	if ct != nil {
		t.export = ct.Export()
		t.random = c.sampler(ct.RandomSampling, "config.tracing.randomSampling")
		t.client = c.sampler(ct.ClientSampling, "config.tracing.clientSampling")
		if fl := ct.Fields; fl != nil {
			for _, a := range fl.Add {
				t.add = append(t.add, logField{a.Name, c.Expression(cel.Log, a.Pos, "config.tracing.fields.add."+a.Name, a.Expr)})
			}
			for _, r := range fl.Remove {
				t.remove[r] = true
			}
		}
	}
	if ft != nil {
		const p = "frontendPolicies.tracing"
		t.export = ft.Export()
		t.add, t.remove = nil, map[string]bool{}
		for _, a := range ft.Attributes {
			t.add = append(t.add, logField{a.Name, c.Expression(cel.Log, a.Pos, p+".attributes."+a.Name, a.Expr)})
		}
		for _, r := range ft.Remove {
			t.remove[r] = true
		}
		if ft.RandomSampling != nil {
			t.random = c.sampler(ft.RandomSampling, p+".randomSampling")
		}
		if ft.ClientSampling != nil {
			t.client = c.sampler(ft.ClientSampling, p+".clientSampling")
		}
		if ft.Filter != "" {
			t.filter = c.Expression(cel.Log, ft.Pos, p+".filter", ft.Filter)
		}
		for _, r := range ft.Resources {
			x := c.Expression(cel.Request, r.Pos, p+".resources."+r.Name, r.Expr)
			if x == nil {
				continue
			}
			v, err := x.Native(cel.Vars{})
			if err != nil {
				c.Fail(r.Pos, p+".resources."+r.Name, fmt.Errorf("a resource is evaluated once, at load, without request variables: %w", err))
				continue
			}
			t.resources = append(t.resources, attributeOf(r.Name, v))
		}
	}
	return t
}

func (t *tracingSpec) start() trace.Tracer {
	t.once.Do(func() {
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpointURL(t.export.URL + t.export.Path),
			otlptracehttp.WithHeaders(t.export.Headers),
		}
		if t.export.Protocol == "grpc" {
			opts = append(opts, otlptracehttp.WithHTTPClient(&http.Client{Transport: newOTLPGRPC(otlpGRPCPath), Timeout: 10 * time.Second}))
		}
		// New only fails on bad options; the URL was checked at load.
		exp, _ := otlptracehttp.New(context.Background(), opts...)
		attrs := append([]attribute.KeyValue{attribute.String("service.name", "tailgate")}, t.resources...)
		t.provider = sdktrace.NewTracerProvider(
			sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(traceBatchTimeout)),
			sdktrace.WithResource(resource.NewSchemaless(attrs...)),
			sdktrace.WithSampler(sdktrace.AlwaysSample()), // the decision is sampler's, made before Start
		)
		t.tracer = t.provider.Tracer("tailgate")
	})
	return t.tracer
}

// close exports what is buffered and stops the exporter.
func (t *tracingSpec) close() {
	if t == nil {
		return
	}
	t.once.Do(func() {}) // a tracer never started stays unstarted
	if t.provider != nil {
		shutdownOTLP(t.provider.Shutdown)
	}
}

// shutdownOTLP exports what an OTLP provider (spans or access log
// records) still buffers and stops it, giving up after 5 s so a collector
// that is down cannot hold up a reload or the gateway's exit.
func shutdownOTLP(shutdown func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shutdown(ctx)
}

// requestTrace is a traced request's span, and the spec that ends it.
type requestTrace struct {
	spec *tracingSpec
	span trace.Span
}

var traceContext = propagation.TraceContext{}

// begin decides whether r is traced; if so it starts the span and sets
// r's traceparent (and tracestate) to it, for the backend.
func (t *tracingSpec) begin(r *http.Request, ci *connInfo, at time.Time) *requestTrace {
	if t == nil {
		return nil
	}
	parent := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	vars := func() cel.Vars { return newRequestVars(r, ci, requestHost(r)).get() }
	sampled := false
	if trace.SpanContextFromContext(parent).IsValid() {
		sampled = t.client.sample(vars, true)
	} else {
		sampled = t.random.sample(vars, false)
	}
	if !sampled {
		return nil
	}
	ctx, span := t.start().Start(parent, "", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(at))
	traceContext.Inject(ctx, propagation.HeaderCarrier(r.Header))
	return &requestTrace{spec: t, span: span}
}

// end names the span, sets its attributes and exports it, unless the
// filter keeps it out. attrs are agentgateway's names for the request.
func (rt *requestTrace) end(r *http.Request, ri *requestInfo, w *statusWriter, bind string, dur time.Duration) {
	if rt == nil {
		return
	}
	t := rt.spec
	var vs cel.Vars
	vars := func() cel.Vars {
		if vs == nil {
			vs = logVars(r, ri, w)
		}
		return vs
	}
	if t.filter != nil {
		if ok, err := t.filter.EvalBool(vars()); err != nil || !ok {
			return // never ended, never exported
		}
	}
	sc := rt.span.SpanContext()
	kv := []any{
		"gateway", bind,
		"listener", ri.listener,
		"route", ri.route,
		"endpoint", ri.backend,
		"src.addr", ri.caller.Address.String(),
		"http.method", r.Method,
		"http.host", r.Host,
		"http.path", r.URL.Path,
		"http.version", r.Proto,
		"http.status", int64(w.status),
		"trace.id", sc.TraceID().String(),
		"span.id", sc.SpanID().String(),
	}
	if sub, ok := ri.caller.Claims["sub"].(string); ok {
		kv = append(kv, "jwt.sub", sub)
	}
	if ri.denyReason != "" {
		kv = append(kv, "reason", ri.denyReason)
	}
	kv = append(kv, "duration", fmt.Sprintf("%dms", dur.Milliseconds()))
	attrs := make([]attribute.KeyValue, 0, len(kv)/2+len(t.add)+2)
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if t.remove[k] || kv[i+1] == "" {
			continue
		}
		attrs = append(attrs, attributeOf(k, kv[i+1]))
	}
	attrs = append(attrs, attribute.String("url.scheme", "http"))
	if r.ProtoMajor == 2 {
		attrs = append(attrs, attribute.String("network.protocol.version", "2"))
	} else if r.ProtoMajor == 1 && r.ProtoMinor == 1 {
		attrs = append(attrs, attribute.String("network.protocol.version", "1.1"))
	}
	name := ""
	for field, v := range fieldValues(t.add, vars) {
		if s, ok := v.(string); ok && field == "span.name" {
			name = s
			continue
		}
		attrs = append(attrs, attributeOf(field, v))
	}
	if name == "" {
		name = r.Method + " " + ri.pathMatch
		if ri.pathMatch == "" {
			name = "unknown"
		}
	}
	rt.span.SetName(name)
	rt.span.SetAttributes(attrs...)
	if ri.upstreamErr != nil {
		rt.span.SetStatus(codes.Error, ri.upstreamErr.Error())
	}
	rt.span.End()
}

// attributeOf turns a Go value (CEL's native form) into a span
// attribute; maps and lists are JSON text, as agentgateway writes them.
func attributeOf(k string, v any) attribute.KeyValue {
	switch v := v.(type) {
	case string:
		return attribute.String(k, v)
	case bool:
		return attribute.Bool(k, v)
	case int64:
		return attribute.Int64(k, v)
	case int:
		return attribute.Int(k, v)
	case uint64:
		return attribute.Int64(k, int64(v))
	case float64:
		return attribute.Float64(k, v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return attribute.String(k, fmt.Sprint(v))
	}
	return attribute.String(k, string(b))
}
