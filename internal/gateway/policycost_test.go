package gateway

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tailgate-dev/tailgate/internal/testtcp"
)

// BenchmarkRoutePolicies is bench/gateway/run.sh's tailgate and tg-bare
// rows in one process: the same route with networkAuthorization + jwtAuth
// (strict, RS256, JWKS file) + an authorization rule on jwt.sub
// (policies), and with no policy (bare). It calls the bind's http.Handler
// directly (no client, no inbound socket), so what policies cost per
// request is a larger and steadier share than under wrk on a shared
// machine. The proxy pairs forward to a real loopback backend, as in
// run.sh; the direct pairs answer with directResponse. Compare each
// pair's cpu-ns/op and allocs/op:
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
	token := benchJWKS(b, dir)
	policies := fmt.Sprintf(`jwtAuth:
  mode: strict
  issuer: https://idp.bench.example
  audiences: [gateway]
  jwks: {file: %s}
authorization:
  rules:
  - 'jwt.sub == "bench"'`, filepath.Join(dir, "jwks.json"))
	network := "networkAuthorization:\n  rules:\n  - allow: 'cidr(\"127.0.0.0/8\").containsIP(source.address)'"
	// direct answers with directResponse after the policies instead of
	// proxying: no socket at all, so the policies' share is plain to see.
	direct := fmt.Sprintf("directResponse: {status: 200, body: %q}", body)
	for _, c := range []struct{ name, policies, frontend string }{
		{"proxy/bare", "", ""},
		{"proxy/policies", policies, network},
		{"direct/bare", direct, ""},
		{"direct/policies", policies + "\n" + direct, network},
	} {
		b.Run(c.name, func(b *testing.B) {
			port := testtcp.FreePort(b)
			cfg := filepath.Join(b.TempDir(), "config.yaml")
			if err := os.WriteFile(cfg, []byte(simpleConfig(port, hostOf(be), c.policies, c.frontend)), 0o600); err != nil {
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
			defer g.Close()
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
			req := func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil).WithContext(ctx)
				r.RemoteAddr = "127.0.0.1:40000"
				r.Header.Set("Authorization", "Bearer "+token)
				r.Header.Set("User-Agent", "bench")
				r.Header.Set("Accept", "*/*")
				return r
			}
			w := &benchWriter{h: http.Header{}}
			h.ServeHTTP(w, req())
			if w.status != http.StatusOK {
				b.Fatalf("status %d, want 200", w.status)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU(b)
			for b.Loop() {
				w.reset()
				h.ServeHTTP(w, req())
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
			// CPU time (the backend's included, as it is the same in both)
			// is steadier than ns/op, which waits on the loopback backend.
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the user + system time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchJWKS writes dir/jwks.json and returns a token it verifies, as
// gatewaybench mint does.
func benchJWKS(b *testing.B, dir string) string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "bench", Algorithm: "RS256", Use: "sig"}}})
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), set, 0o600); err != nil {
		b.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(sig).Claims(jwt.Claims{
		Issuer: "https://idp.bench.example", Subject: "bench", Audience: jwt.Audience{"gateway"},
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now),
	}).Serialize()
	if err != nil {
		b.Fatal(err)
	}
	return tok
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
