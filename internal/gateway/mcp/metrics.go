package mcp

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the MCP series of one gateway. Create them once per
// registry (they outlive config reloads) and pass them to every Backend.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	denials  *prometheus.CounterVec
	starts   *prometheus.CounterVec
}

// NewMetrics registers the MCP series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailgate_gateway_mcp_requests_total",
			Help: "MCP requests handled, by JSON-RPC method, target and tool (empty when not a tool call).",
		}, []string{"method", "target", "tool"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tailgate_gateway_mcp_tool_call_duration_seconds",
			Help:    "Time a tools/call took through the gateway, by target and tool.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"target", "tool"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailgate_gateway_mcp_denials_total",
			Help: "MCP calls refused by mcpAuthorization, by kind (tool, prompt, resource) and target.",
		}, []string{"kind", "target"}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailgate_gateway_mcp_target_starts_total",
			Help: "Connections to MCP targets (stdio process starts included), by target and result (ok, error).",
		}, []string{"target", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.denials, m.starts)
	}
	return m
}

func (m *Metrics) request(method, target, tool string) {
	if m != nil {
		m.requests.WithLabelValues(method, target, tool).Inc()
	}
}

func (m *Metrics) toolCall(target, tool string, d time.Duration) {
	if m != nil {
		m.duration.WithLabelValues(target, tool).Observe(d.Seconds())
	}
}

func (m *Metrics) denial(kind, target string) {
	if m != nil {
		m.denials.WithLabelValues(kind, target).Inc()
	}
}

func (m *Metrics) start(target string, err error) {
	if m == nil {
		return
	}
	res := "ok"
	if err != nil {
		res = "error"
	}
	m.starts.WithLabelValues(target, res).Inc()
}
