package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/errcode"
	"github.com/tailgate-dev/tailgate/internal/jobs"
	tgrun "github.com/tailgate-dev/tailgate/internal/run"
)

// serveMetrics are tailgate serve's Prometheus metrics, one registry per
// stack. Labels are bounded and carry no tenant data: no org, environment,
// target, node or token ever becomes a label (environment names are the
// tenant's words, and an org label would grow with the customer list).
// The labels are:
//
//   - reason on runs ended: client, lease_expired, max_lifetime, shutdown,
//     orphaned (a previous process held the run) or other;
//   - result on the latency histograms: ok, failing (a verification that
//     ran and found a target unreachable), or the error's stable code from
//     package errcode's registry, else "error".
//
// Runs that fail to start are not counted as started or ended; they are
// tailgate_run_start_seconds observations with a result other than ok.
type serveMetrics struct {
	reg         *prometheus.Registry
	runsStarted prometheus.Counter
	runsEnded   *prometheus.CounterVec
	connect     *prometheus.HistogramVec
	verify      *prometheus.HistogramVec
	runStart    *prometheus.HistogramVec
}

// runEndReasons are the values of runs_ended_total's reason label.
var runEndReasons = []string{"client", "lease_expired", "max_lifetime", "shutdown", "orphaned", "other"}

func newServeMetrics() *serveMetrics {
	m := &serveMetrics{reg: prometheus.NewRegistry()}
	m.runsStarted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailgate_runs_started_total",
		Help: "Runs that joined the tailnet and became ready.",
	})
	m.runsEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailgate_runs_ended_total",
		Help: "Runs ended, by reason: client, lease_expired, max_lifetime, shutdown, orphaned (left open by a previous process), other.",
	}, []string{"reason"})
	for _, r := range runEndReasons {
		m.runsEnded.WithLabelValues(r)
	}
	// Connect writes a policy and mints a client (seconds); verify joins
	// and probes every target (seconds to a minute or more); a run joins
	// and warms its paths (tens of milliseconds to seconds).
	slow := prometheus.ExponentialBuckets(0.05, 2, 13) // 50 ms … 205 s
	fast := prometheus.ExponentialBuckets(0.01, 2, 14) // 10 ms … 82 s
	m.connect = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tailgate_connect_seconds", Help: "Connect requests, from request to answer, by result (ok or an error code).", Buckets: slow,
	}, []string{"result"})
	m.verify = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tailgate_verify_seconds", Help: "Verify requests, from request to answer, by result (ok, failing, or an error code). Scheduled verifications are not included.", Buckets: slow,
	}, []string{"result"})
	m.runStart = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tailgate_run_start_seconds", Help: "Run starts, from request until the run is ready (node joined, paths warm, proxy listening), by result (ok or an error code).", Buckets: fast,
	}, []string{"result"})
	for _, h := range []*prometheus.HistogramVec{m.connect, m.verify, m.runStart} {
		h.WithLabelValues("ok")
	}
	m.reg.MustRegister(m.runsStarted, m.runsEnded, m.connect, m.verify, m.runStart,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// countOpenRuns exports the runs the manager holds open as a gauge.
func (m *serveMetrics) countOpenRuns(runs *tgrun.Manager) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tailgate_runs_active",
		Help: "Runs open in this process.",
	}, func() float64 { return float64(runs.Open()) }))
}

// countQueueDepth exports the job queue's backlog (every replica's, as
// River keeps it in the shared database) as a gauge; NaN when the
// database does not answer.
func (m *serveMetrics) countQueueDepth(q *jobs.Queue) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tailgate_jobs_queue_depth",
		Help: "Background jobs waiting to be worked (available, scheduled or to be retried), across all replicas. Only on PostgreSQL.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := q.Depth(ctx)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	}))
}

// countWarmPool exports the warm pool's size and how runs fared with it.
func (m *serveMetrics) countWarmPool(p *tgrun.Pool) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tailgate_warm_pool_nodes",
		Help: "Nodes joined and warmed in this process's warm pool, waiting for a run (all environments).",
	}, func() float64 { return float64(p.Stats().Ready) }))
	for _, c := range []struct {
		name, help string
		count      func(tgrun.PoolStats) int64
	}{
		{"tailgate_warm_pool_hits_total", "Runs started on this server with a node from the warm pool.",
			func(s tgrun.PoolStats) int64 { return s.Hits }},
		{"tailgate_warm_pool_misses_total", "Runs started on this server that found the warm pool empty for their environment and joined.",
			func(s tgrun.PoolStats) int64 { return s.Misses }},
		{"tailgate_warm_pool_join_failures_total", "Warm pool joins that failed (each retried with backoff).",
			func(s tgrun.PoolStats) int64 { return s.JoinFailures }},
	} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(c.count(p.Stats())) }))
	}
}

// Handler serves the metrics in Prometheus' text format.
func (m *serveMetrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// runStore counts runs as the run manager records them: every run that
// becomes ready, and every end of one, is recorded through it, whoever
// ends it (the client, the sweeper, shutdown).
func (m *serveMetrics) runStore(st tgrun.Store) tgrun.Store { return meteredRunStore{st, m} }

type meteredRunStore struct {
	tgrun.Store
	m *serveMetrics
}

func (s meteredRunStore) UpdateRun(ctx context.Context, orgID, id, state, node, nodeID, proxyAddr string) error {
	err := s.Store.UpdateRun(ctx, orgID, id, state, node, nodeID, proxyAddr)
	if err == nil && state == tgrun.StateReady {
		s.m.runsStarted.Inc()
	}
	return err
}

func (s meteredRunStore) EndRun(ctx context.Context, orgID, id, reason string) error {
	err := s.Store.EndRun(ctx, orgID, id, reason)
	// The run has ended whether or not the record could be written.
	if label := runEndLabel(reason); label != "" {
		s.m.runsEnded.WithLabelValues(label).Inc()
	}
	return err
}

// runEndLabel maps a run's end reason (a sentence) to the bounded label;
// "" for a run that never started. The sentences are the run manager's
// and the API's (EndReasonClient).
func runEndLabel(reason string) string {
	switch {
	case reason == api.EndReasonClient:
		return "client"
	case strings.HasPrefix(reason, "failed to start"):
		return ""
	case reason == tgrun.ReasonLease:
		return "lease_expired"
	case reason == tgrun.ReasonLifetime:
		return "max_lifetime"
	case reason == tgrun.ReasonShutdown:
		return "shutdown"
	case reason == tgrun.ReasonOrphaned:
		return "orphaned"
	}
	return "other"
}

// network times connect and verify as the API's clients see them.
func (m *serveMetrics) network(pn api.PrivateNetwork) api.PrivateNetwork {
	return meteredNetwork{pn, m}
}

type meteredNetwork struct {
	api.PrivateNetwork
	m *serveMetrics
}

func (n meteredNetwork) Connect(ctx context.Context, req connect.Request) (connect.Result, error) {
	start := time.Now()
	res, err := n.PrivateNetwork.Connect(ctx, req)
	n.m.connect.WithLabelValues(resultLabel(err)).Observe(time.Since(start).Seconds())
	return res, err
}

func (n meteredNetwork) Verify(ctx context.Context, orgID, env string) (connect.Verification, error) {
	start := time.Now()
	v, err := n.PrivateNetwork.Verify(ctx, orgID, env)
	result := resultLabel(err)
	if err == nil && !v.OK {
		result = "failing"
	}
	n.m.verify.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return v, err
}

// runs times run starts as the API's clients see them.
func (m *serveMetrics) runs(r api.Runs) api.Runs { return meteredRuns{r, m} }

type meteredRuns struct {
	api.Runs
	m *serveMetrics
}

func (r meteredRuns) Start(ctx context.Context, orgID, env string, opts tgrun.Options) (tgrun.Info, error) {
	start := time.Now()
	info, err := r.Runs.Start(ctx, orgID, env, opts)
	r.m.runStart.WithLabelValues(resultLabel(err)).Observe(time.Since(start).Seconds())
	return info, err
}

// resultLabel is "ok", the error's registered code, or "error".
func resultLabel(err error) string {
	if err == nil {
		return "ok"
	}
	var code errcode.Code
	var ce *connect.Error
	var re *tgrun.Error
	switch {
	case errors.As(err, &ce):
		code = ce.Code
	case errors.As(err, &re):
		code = re.Code
	}
	if _, known := errcode.Status[code]; known {
		return string(code)
	}
	return "error"
}

// serveMetricsHTTP serves /metrics (only) on addr, apart from the API, so
// that the API keeps answering 401 to every unauthenticated path and
// the operator decides who may scrape. It returns the address it listens
// on and a function that stops it.
func serveMetricsHTTP(addr string, h http.Handler, log *slog.Logger) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}
