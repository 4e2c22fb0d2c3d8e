package gateway

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/yaml.v3"
)

// metrics are per Gateway (own registry), so tests and embedders can run
// several gateways in one process.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	denials  *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	// fastFront counts the requests the fast front served (fastfront.go).
	fastFront *prometheus.CounterVec
	// counted and timed cache the children of requests and duration a
	// request updates: finding one by its label values hashes them all
	// and formats the status, every request. Label values come from the
	// config and the status code, so both stay as small as the vectors.
	counted childCache[requestLabels, prometheus.Counter]
	timed   childCache[routeLabels, prometheus.Observer]
}

// childCache is a map read without a lock (and without boxing its keys,
// as sync.Map would); a miss copies it.
type childCache[K comparable, V any] struct {
	mu sync.Mutex
	m  atomic.Pointer[map[K]V]
}

func (c *childCache[K, V]) get(k K, child func() V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
	}
	m := make(map[K]V, 1)
	if old != nil {
		m = maps.Clone(*old)
	}
	v := child()
	m[k] = v
	c.m.Store(&m)
	return v
}

type routeLabels struct{ bind, route string }

type requestLabels struct {
	routeLabels
	method string
	status int
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailgate_gateway_requests_total",
		Help: "HTTP requests handled, by bind, route, method and status code.",
	}, []string{"bind", "route", "method", "status"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tailgate_gateway_request_duration_seconds",
		Help:    "Time from request headers read to response finished, by bind and route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"bind", "route"})
	m.denials = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailgate_gateway_denials_total",
		Help: "Connections and requests refused, by policy and reason.",
	}, []string{"policy", "reason"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailgate_gateway_config_reloads_total",
		Help: "Config reloads, by result (ok, error).",
	}, []string{"result"})
	m.fastFront = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailgate_gateway_fast_front_requests_total",
		Help: "Requests the fast front served itself (plain GET, HEAD and OPTIONS on HTTP and HTTPS binds), by bind; the rest of tailgate_gateway_requests_total went through net/http.",
	}, []string{"bind"})
	m.reg.MustRegister(m.requests, m.duration, m.denials, m.reloads, m.fastFront,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) denial(policy, reason string) {
	m.denials.WithLabelValues(policy, reason).Inc()
}

func (m *metrics) request(bind, route, method string, status int, d time.Duration) {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
	default:
		method = "other" // keep label values bounded
	}
	rl := routeLabels{bind, route}
	m.counted.get(requestLabels{rl, method, status}, func() prometheus.Counter {
		return m.requests.WithLabelValues(bind, route, method, strconv.Itoa(status))
	}).Inc()
	m.timed.get(rl, func() prometheus.Observer {
		return m.duration.WithLabelValues(bind, route)
	}).Observe(d.Seconds())
}

func (g *Gateway) startAdmin() error {
	addr := g.opts.AdminAddr
	if addr == "" {
		if c := g.snap.Load().file.Config; c != nil && c.AdminAddr != "" {
			addr = c.AdminAddr
		} else {
			addr = "127.0.0.1:15000"
		}
	}
	if addr == "off" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}))
	g.adminPages(mux)
	mux.HandleFunc("GET /healthz/ready", func(w http.ResponseWriter, r *http.Request) {
		if !g.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /config_dump", g.serveConfigDump)
	if g.opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	g.adminLn = ln
	g.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go g.admin.Serve(ln)
	g.log.Info("admin listening", "addr", ln.Addr().String())

	// agentgateway's separate stats and readiness addresses, when the
	// file names them (the admin address serves both anyway).
	if c := g.snap.Load().file.Config; c != nil && g.opts.AdminAddr == "" {
		for _, extra := range []struct{ addr, path string }{{c.StatsAddr, "GET /metrics"}, {c.ReadinessAddr, "GET /healthz/ready"}} {
			if extra.addr == "" || extra.addr == addr {
				continue
			}
			eln, err := net.Listen("tcp", extra.addr)
			if err != nil {
				g.admin.Close()
				for _, s := range g.extraAdmin {
					s.Close()
				}
				return fmt.Errorf("admin listener %s: %w", extra.addr, err)
			}
			m := http.NewServeMux()
			h, _ := mux.Handler(&http.Request{Method: "GET", URL: mustURL(strings.TrimPrefix(extra.path, "GET "))})
			m.Handle(extra.path, h)
			srv := &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}
			g.extraAdmin = append(g.extraAdmin, srv)
			go srv.Serve(eln)
		}
	}
	return nil
}

func mustURL(path string) *url.URL {
	u, _ := url.Parse(path)
	return u
}

// ConfigDump is what /config_dump serves.
type ConfigDump struct {
	File     string         `json:"file"`
	LoadedAt time.Time      `json:"loadedAt"`
	SHA256   string         `json:"sha256"`
	Binds    []BindStatus   `json:"binds"`
	Config   map[string]any `json:"config"`
}

// BindStatus is one listening bind.
type BindStatus struct {
	Bind    string `json:"bind"`
	Network string `json:"network"` // host or tailnet
	Addr    string `json:"addr"`
}

func (g *Gateway) serveConfigDump(w http.ResponseWriter, r *http.Request) {
	s := g.snap.Load()
	d := ConfigDump{File: g.opts.ConfigPath, LoadedAt: s.loadedAt, SHA256: fmt.Sprintf("%x", s.hash),
		Binds: g.bindStatus(), Config: s.redacted()}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(d)
}

// redacted is the snapshot's file as YAML decodes it, through Redact;
// nil if it does not decode to a map.
func (s *snapshot) redacted() map[string]any {
	var raw any
	if err := yaml.Unmarshal(s.source, &raw); err != nil {
		return nil
	}
	m, _ := Redact(raw).(map[string]any)
	return m
}

// bindStatus lists the binds listening now, by name.
func (g *Gateway) bindStatus() []BindStatus {
	var out []BindStatus
	g.mu.Lock()
	for port, bs := range g.servers {
		n := "host"
		if bs.tailnet {
			n = "tailnet"
		} else if bs.internal {
			n = "internal"
		}
		out = append(out, BindStatus{Bind: fmt.Sprintf("bind/%d", port), Network: n, Addr: bs.ln.Addr().String()})
	}
	g.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Bind < out[j].Bind })
	return out
}

// sensitiveHeaders carry credentials; their configured values (header
// modifiers, extAuthz headers) are never shown.
var sensitiveHeaders = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "set-cookie": true,
	"x-api-key": true, "api-key": true, "x-auth-token": true,
}

// Redact returns a copy of a decoded YAML value with secrets replaced by
// "<redacted>": values of credential headers, keys that name a secret
// (token, secret, password, authKey, signingKey), backendAuth's static
// key, inline JWKS with private or symmetric key material, and userinfo
// or query strings in URLs. It is the gateway's one redaction
// helper; use it for anything config-shaped that leaves the process.
func Redact(v any) any {
	return redact(v, "")
}

func redact(v any, key string) any {
	lk := strings.ToLower(key)
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, val := range t {
			// An MCP stdio target's env is where its API keys go, under
			// any name (OPENAI_API_KEY, GH_PAT): every value is redacted;
			// so is backendAuth's inline key (backendTLS's key is a path).
			if s, ok := val.(string); ok && s != "" && (lk == "env" || (lk == "backendauth" && k == "key")) {
				out[k] = "<redacted>"
				continue
			}
			out[k] = redact(val, k)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = redact(x, key)
		}
		return out
	case string:
		return redactNamed(key, t)
	}
	return v
}

// redactNamed is Redact for one string value named key (a config key,
// a header name): redacted when the name says it is a secret, with a
// URL's userinfo and query removed, and inline private key sets hidden.
func redactNamed(key, s string) string {
	lk := strings.ToLower(key)
	switch {
	case s == "":
		return s
	case secretKey(lk) || sensitiveHeaders[lk]:
		return "<redacted>"
	case strings.Contains(s, "://"):
		return redactURL(s)
	case lk == "jwks" && (strings.Contains(s, `"d"`) || strings.Contains(s, `"k"`)):
		return "<redacted: inline key set with private or symmetric key material>"
	}
	return s
}

func secretKey(k string) bool {
	lk := strings.ToLower(k)
	for _, s := range []string{"secret", "password", "token", "credential", "privatekey", "signingkey", "authkey", "apikey"} {
		if strings.Contains(lk, s) {
			return true
		}
	}
	return false
}

func redactURL(s string) string {
	i := strings.Index(s, "://")
	rest := s[i+3:]
	if at := strings.Index(rest, "@"); at >= 0 && at < strings.IndexAny(rest+"/", "/") {
		rest = "<redacted>@" + rest[at+1:]
	}
	if q := strings.Index(rest, "?"); q >= 0 {
		rest = rest[:q] + "?<redacted>"
	}
	return s[:i+3] + rest
}
