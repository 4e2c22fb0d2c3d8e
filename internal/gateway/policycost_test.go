package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tailgate-dev/tailgate/internal/testtcp"
)

// BenchmarkRoutePolicies is bench/gateway/run.sh's tailgate and tg-bare
// rows in one process: the same route with networkAuthorization + jwtAuth
// (strict, RS256, JWKS file) + an authorization rule on jwt.sub
// (policies), and with no policy (bare). It calls the bind's http.Handler
// directly (no client, no inbound socket), so what policies cost per
// request is a larger and steadier share than under wrk. The proxy
// routes forward to a real loopback backend, as in run.sh; the direct
// ones answer with directResponse (no socket at all). The paired
// sub-benchmarks alternate blocks of requests between the two routes, so
// that other load on a shared machine falls on both alike, and report
// each one's process CPU per request and their ratio (policies-x-bare):
//
//	go test ./internal/gateway/ -run '^$' -bench RoutePolicies -benchmem -count 5
func BenchmarkRoutePolicies(b *testing.B) {
	body := strings.Repeat("x", 1024)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	}))
	defer be.Close()
	dir := b.TempDir()
	token, policies, network := benchPolicies(b, dir)
	direct := fmt.Sprintf("directResponse: {status: 200, body: %q}", body)
	for _, mode := range []string{"proxy", "direct"} {
		routePolicies, barePolicies := policies, ""
		if mode == "direct" {
			routePolicies, barePolicies = policies+"\n"+direct, direct
		}
		b.Run(mode+"/bare", func(b *testing.B) {
			serve := benchRoute(b, hostOf(be), barePolicies, "", token)
			cpu0 := processCPU(b)
			for b.Loop() {
				serve()
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
		b.Run(mode+"/policies", func(b *testing.B) {
			serve := benchRoute(b, hostOf(be), routePolicies, network, token)
			cpu0 := processCPU(b)
			for b.Loop() {
				serve()
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
		b.Run(mode+"/paired", func(b *testing.B) {
			ns := inTurns(b, 100, benchRoute(b, hostOf(be), barePolicies, "", token), benchRoute(b, hostOf(be), routePolicies, network, token))
			bare, pol := ns[0], ns[1]
			b.ReportMetric(bare, "bare-cpu-ns/req")
			b.ReportMetric(pol, "policies-cpu-ns/req")
			b.ReportMetric(pol/bare, "policies-x-bare")
		})
	}
}

// inTurns runs b's loop over sides in turns, block requests at a time,
// and returns each side's CPU nanoseconds a request: the median of its
// blocks. Other load only ever adds CPU time (cache misses, switches), so
// the median block is a steadier figure than the mean, and sides that
// take turns see the same load.
func inTurns(b *testing.B, block int, sides ...func()) []float64 {
	blocks := make([][]time.Duration, len(sides)) // CPU of each whole block
	i, mark := 0, processCPU(b)
	for b.Loop() {
		side := (i / block) % len(sides)
		sides[side]()
		if i++; i%block == 0 {
			now := processCPU(b)
			blocks[side] = append(blocks[side], now-mark)
			mark = now
		}
	}
	ns := make([]float64, len(sides))
	for s, bl := range blocks {
		if len(bl) < 5 {
			b.Skip("too few blocks of requests; use a longer -benchtime")
		}
		ns[s] = float64(median(bl)) / float64(block)
	}
	return ns
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchRoute starts a gateway with one route to backend with policies
// (and frontend policies), and returns a function that serves one
// request with a bearer token through the bind's handler and checks
// that it was answered 200.
func benchRoute(b *testing.B, backend, policies, frontend, token string) func() {
	port := testtcp.FreePort(b)
	cfg := filepath.Join(b.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(simpleConfig(port, backend, policies, frontend)), 0o600); err != nil {
		b.Fatal(err)
	}
	g, err := New(Options{ConfigPath: cfg, BindHost: "127.0.0.1", AdminAddr: "off", AccessLog: io.Discard,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ReloadInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	bs := g.servers[port]
	h := bs.srv.Handler
	// The connection as gatedListener hands it to net/http: from
	// loopback, networkAuthorization already decided.
	ac := &authConn{Conn: benchConn{}, g: g, bs: bs}
	ac.once.Do(ac.authorize)
	if ac.denied {
		b.Fatal("networkAuthorization denied the loopback connection")
	}
	ctx := context.WithValue(context.Background(), connKey, ac)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	w := &benchWriter{h: http.Header{}}
	serve := func() {
		r := httptest.NewRequest(http.MethodGet, url, nil).WithContext(ctx)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("User-Agent", "bench")
		r.Header.Set("Accept", "*/*")
		w.reset()
		h.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			b.Fatalf("status %d, want 200", w.status)
		}
	}
	serve()
	return serve
}

// processCPU is the user + system time the process has used, from
// getrusage: to the microsecond, where /proc's clock ticks
// (measure.CPUTimeOf) are 10 ms, as long as a whole block of requests.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPolicies are the bench's policies, as bench/gateway/setup.sh
// writes them: the route's (jwtAuth, strict, RS256, a JWKS file in dir,
// and an authorization rule on jwt.sub) and the frontend's
// (networkAuthorization of loopback), and a token they accept.
func benchPolicies(b *testing.B, dir string) (token, route, frontend string) {
	token = benchJWKS(b, dir)
	route = fmt.Sprintf(`jwtAuth:
  mode: strict
  issuer: https://idp.bench.example
  audiences: [gateway]
  jwks: {file: %s}
authorization:
  rules:
  - 'jwt.sub == "bench"'`, filepath.Join(dir, "jwks.json"))
	frontend = "networkAuthorization:\n  rules:\n  - allow: 'cidr(\"127.0.0.0/8\").containsIP(source.address)'"
	return token, route, frontend
}

// benchJWKS writes dir/jwks.json and returns a token it verifies, as
// gatewaybench mint does.
func benchJWKS(b *testing.B, dir string) string {
	p := newIDP(b, "bench")
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), p.jwks(), 0o600); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	return p.token("bench", claims{Claims: jwt.Claims{
		Issuer: "https://idp.bench.example", Subject: "bench", Audience: jwt.Audience{"gateway"},
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now),
	}})
}

// benchConn is the accepted connection authConn wraps: only its peer
// address is read.
type benchConn struct{ net.Conn }

func (benchConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

// benchWriter is a ResponseWriter that keeps the status and drops the body.
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}
func (w *benchWriter) reset() {
	clear(w.h)
	w.status = 0
}
