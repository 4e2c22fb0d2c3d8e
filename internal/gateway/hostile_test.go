package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// headerBackend answers with the headers a backend uses to identify the
// client, and the gateway's own x-gw.
func headerBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, k := range []string{"X-Gw", "X-Real-Ip", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "Upgrade"} {
			fmt.Fprintf(w, "%s=%s\n", k, strings.Join(r.Header.Values(k), "|"))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHostileConnectionHeaderCannotStripGatewayHeaders(t *testing.T) {
	be := headerBackend(t)
	port := freePort(t)
	startGateway(t, simpleConfig(port, hostOf(be), `requestHeaderModifier: {set: {x-gw: tailgate}}`, ""), port)
	code, body, _ := rawRequest(t, port, "GET", "/", "Connection: X-Gw, X-Real-IP", "Connection: X-Forwarded-For, X-Forwarded-Proto")
	for _, want := range []string{"X-Gw=tailgate\n", "X-Real-Ip=127.0.0.1\n", "X-Forwarded-For=127.0.0.1\n", "X-Forwarded-Proto=http\n"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("Connection named gateway headers: %d, backend saw\n%s\nwant %q", code, body, want)
		}
	}
	// A client-only header named in Connection is still hop-by-hop; an
	// upgrade still reaches the backend.
	code, body, _ = rawRequest(t, port, "GET", "/", "Connection: Upgrade, X-Real-IP", "Upgrade: websocket", "X-Real-IP: 6.6.6.6")
	if code != 200 || !strings.Contains(body, "Upgrade=websocket\n") || strings.Contains(body, "6.6.6.6") {
		t.Errorf("upgrade: %d, backend saw\n%s", code, body)
	}
}

// TestHostileForwardingHeadersTrustPolicy: from an untrusted peer every
// forwarding header is the gateway's; from a trusted proxy the chain is
// kept and the client is the rightmost untrusted hop.
func TestHostileForwardingHeadersTrustPolicy(t *testing.T) {
	be := headerBackend(t)
	plain, trusting := freePort(t), freePort(t)
	bind := func(port int, extra string) string {
		return fmt.Sprintf("- port: %d%s\n  listeners:\n  - protocol: HTTP\n    routes:\n    - backends: [{host: %s}]\n", port, extra, hostOf(be))
	}
	cfg := "binds:\n" + bind(plain, "") + bind(trusting, "\n  trustedProxies: [127.0.0.1, 10.0.0.0/8]")
	startGateway(t, cfg, plain)
	spoof := []string{"X-Real-IP: 6.6.6.6", "X-Forwarded-For: 6.6.6.6", "X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example", "Forwarded: for=6.6.6.6"}

	code, body, _ := rawRequest(t, plain, "GET", "/", spoof...)
	want := fmt.Sprintf("X-Gw=\nX-Real-Ip=127.0.0.1\nX-Forwarded-For=127.0.0.1\nX-Forwarded-Proto=http\nX-Forwarded-Host=127.0.0.1:%d\nForwarded=\n", plain)
	if code != 200 || !strings.HasPrefix(body, want) {
		t.Errorf("untrusted peer: %d, backend saw\n%s\nwant\n%s", code, body, want)
	}

	code, body, _ = rawRequest(t, trusting, "GET", "/", "X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.0.0.2", "X-Real-IP: 6.6.6.6", "X-Forwarded-Proto: https", "Forwarded: for=203.0.113.7")
	want = fmt.Sprintf("X-Gw=\nX-Real-Ip=203.0.113.7\nX-Forwarded-For=6.6.6.6, 203.0.113.7, 10.0.0.2, 127.0.0.1\nX-Forwarded-Proto=https\nX-Forwarded-Host=127.0.0.1:%d\nForwarded=for=203.0.113.7\n", trusting)
	if code != 200 || !strings.HasPrefix(body, want) {
		t.Errorf("trusted proxy: %d, backend saw\n%s\nwant\n%s", code, body, want)
	}
}

// slowBodyBackend reads the whole body before answering with its size.
func slowBodyBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "read %d bytes", len(b))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestHostileBodyReadTimeoutCutsADrip: a client sending one byte at a
// time is answered 408 and disconnected after bodyReadTimeout, while an
// upload that keeps arriving at a modest rate outlasts the timeout.
func TestHostileBodyReadTimeoutCutsADrip(t *testing.T) {
	be := slowBodyBackend(t)
	port := freePort(t)
	cfg := strings.Replace(simpleConfig(port, hostOf(be), "", ""), "  listeners:", "  bodyReadTimeout: 1s\n  listeners:", 1)
	startGateway(t, cfg, port)

	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	answered := make(chan *http.Response, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			answered <- resp
		}
		close(answered)
	}()
	var resp *http.Response
drip:
	for i := 0; i < 100; i++ {
		select {
		case resp = <-answered:
			break drip
		case <-time.After(300 * time.Millisecond):
			c.Write([]byte("x")) // errors once the gateway has hung up
		}
	}
	if resp == nil || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("drip: answer %v after %v, want 408 after about 1s", resp, time.Since(start))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("drip answered only after %v", d)
	}

	// 512 bytes every 200 ms (2.5 KiB/s) for 3 s: longer than the timeout,
	// faster than the minimum rate.
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 15; i++ {
			pw.Write(make([]byte, 512))
			time.Sleep(200 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/upload", port), pr)
	code, body, _ := do(t, req)
	if code != 200 || body != "read 7680 bytes" {
		t.Fatalf("steady upload: %d %q", code, body)
	}
}

func TestHostileBodyReadTimeoutIsOnByDefault(t *testing.T) {
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, "127.0.0.1:1", "", ""), port)
	if d := g.snap.Load().binds[port].bodyTimeout; d != 30*time.Second {
		t.Fatalf("default body read timeout %v, want 30s", d)
	}
}

// TestHostileMalformedChunkedBodyIs400: a body the client broke is the
// client's error, not the backend's.
func TestHostileMalformedChunkedBodyIs400(t *testing.T) {
	be := slowBodyBackend(t)
	port := freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), "", ""), port)
	for _, chunked := range []string{"zz\r\nhello\r\n0\r\n\r\n", "5\r\nhelloXX0\r\n\r\n", "ffffffffffffffffff\r\n"} {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%s", chunked)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%q: %v", chunked, err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("malformed chunked body %q: %d, want 400", chunked, resp.StatusCode)
		}
	}
	if log := g.access.WaitFor(t, "status=400"); strings.Contains(log, "status=502") {
		t.Errorf("a client's broken body was logged as an upstream failure:\n%s", log)
	}
}

func TestHostileBindOptionsAreChecked(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ extra, want string }{
		{"  bodyReadTimeout: fast\n", "binds[0].bodyReadTimeout: want a duration"},
		{"  bodyReadTimeout: -1s\n", "binds[0].bodyReadTimeout: want a duration"},
		{"  trustedProxies: [10.0.0.0/33]\n", "binds[0].trustedProxies[0]: want an IP address or CIDR"},
		{"  trustedProxies: [proxy.example]\n", "binds[0].trustedProxies[0]: want an IP address or CIDR"},
	} {
		path := filepath.Join(dir, "c.yaml")
		cfg := "binds:\n- port: 1\n" + c.extra + "  listeners:\n  - routes:\n    - backends: [{host: '127.0.0.1:1'}]\n"
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Validate(path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", strings.TrimSpace(c.extra), err, c.want)
		}
	}
}
