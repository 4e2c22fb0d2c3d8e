package egress_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailgate-dev/tailgate/internal/egress"
)

// The fuzz targets below throw raw bytes at the run proxy's three parsers
// (HTTP CONNECT, absolute-form forwarding, SOCKS5) over a real loopback
// connection, and check after every input that
//
//   - the proxy did not panic (a SOCKS5 panic kills the test binary; a
//     panic in an HTTP handler is recovered by net/http and logged, which
//     the panic-catching logger turns into a failure), and
//   - it resolved only target names and dialled only a target's resolved
//     address on that target's port: nothing off-target.
//
// Their seed corpus runs as an ordinary test in `go test`; run one with
// `go test ./internal/egress -run '^$' -fuzz FuzzSOCKS5 -fuzztime 20s`.

// fuzzProxy is one proxy shared by every input of a fuzz target.
type fuzzProxy struct {
	e      *env
	panics *panicLog
	// allowed are the addresses a dial may go to: each target's resolved
	// addresses on its port.
	allowed map[netip.AddrPort]bool
	// names are the target names a lookup may ask for.
	names map[string]bool
	// mu serialises inputs: the checks read the fake tailnet's logs.
	mu sync.Mutex
}

// panicLog records log lines that report a recovered panic.
type panicLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *panicLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		l.mu.Lock()
		l.lines = append(l.lines, r.Message)
		l.mu.Unlock()
	}
	return nil
}
func (l *panicLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *panicLog) WithGroup(string) slog.Handler      { return l }

func (l *panicLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

func newFuzzProxy(f *testing.F) *fuzzProxy {
	pl := &panicLog{}
	e := newEnv(f, func(o *egress.Options) {
		o.Logger = slog.New(pl)
		o.IdleTimeout = 300 * time.Millisecond
		o.DialTimeout = time.Second
	})
	fp := &fuzzProxy{e: e, panics: pl, allowed: map[netip.AddrPort]bool{}, names: map[string]bool{}}
	ctx := context.Background()
	for _, t := range []target.Target{
		{Host: "app.internal.example", Port: 80},
		{Host: "secure.internal.example", Port: 443},
		{Host: "ghost.internal.example", Port: 80},
		{Host: "stray.internal.example", Port: 443},
		{Host: "flaky.internal.example", Port: 443},
		{Host: "192.0.2.10", Port: 443},
	} {
		if ip, err := netip.ParseAddr(t.Host); err == nil {
			fp.allowed[netip.AddrPortFrom(ip, t.Port)] = true
			continue
		}
		fp.names[t.Host] = true
		addrs, _ := e.tailnet.LookupNetIP(ctx, t.Host)
		for _, a := range addrs {
			fp.allowed[netip.AddrPortFrom(a, t.Port)] = true
		}
	}
	return fp
}

// exchange sends input on a fresh connection, half-closes it, and reads
// whatever the proxy answers until it closes or a short deadline passes.
func (fp *fuzzProxy) exchange(t *testing.T, input []byte) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	lookups, dials := len(fp.e.tailnet.Lookups()), len(fp.e.tailnet.Dials())
	c, err := net.Dial("tcp", fp.e.addr.String())
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.Write(input)
	_ = c.(*net.TCPConn).CloseWrite()
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	c.Close()

	for _, name := range fp.e.tailnet.Lookups()[lookups:] {
		if n := strings.ToLower(strings.TrimSuffix(name, ".")); !fp.names[n] {
			t.Errorf("input %q: the proxy resolved %q, which is not a target", input, name)
		}
	}
	for _, ap := range fp.e.tailnet.Dials()[dials:] {
		if !fp.allowed[ap] {
			t.Errorf("input %q: the proxy dialled %s, which is not a target's address and port", input, ap)
		}
	}
	if lines := fp.panics.take(); len(lines) > 0 {
		t.Fatalf("input %q: the proxy panicked: %s", input, lines)
	}
}

func FuzzHTTPConnect(f *testing.F) {
	for _, s := range []string{
		"CONNECT app.internal.example:80 HTTP/1.1\r\nHost: app.internal.example:80\r\n\r\n",
		"CONNECT secure.internal.example:443 HTTP/1.1\r\n\r\n",
		"CONNECT other-env.internal.example:80 HTTP/1.1\r\n\r\n",
		"CONNECT 100.64.0.9:80 HTTP/1.1\r\nHost: app.internal.example:80\r\n\r\n",
		"CONNECT app.internal.example:80@other-env.internal.example:80 HTTP/1.1\r\n\r\n",
		"CONNECT other-env.internal.example:80#app.internal.example:80 HTTP/1.1\r\n\r\n",
		"CONNECT [::ffff:100.64.0.9]:80 HTTP/1.1\r\n\r\n",
		"CONNECT [::ffff:100.64.0.5]:80 HTTP/1.1\r\n\r\n",
		"CONNECT [fe80::1%25eth0]:80 HTTP/1.1\r\n\r\n",
		"CONNECT app.internal.example:0080 HTTP/1.1\r\n\r\n",
		"CONNECT app.internal.example:65616 HTTP/1.1\r\n\r\n",
		"CONNECT app.internal.example:-1 HTTP/1.1\r\n\r\n",
		"CONNECT app.internal.example:0 HTTP/1.1\r\n\r\n",
		"CONNECT app.internal.example HTTP/1.1\r\n\r\n",
		"CONNECT APP.Internal.Example.:80 HTTP/1.1\r\n\r\n",
		"CONNECT app.internal.example%2eother:80 HTTP/1.1\r\n\r\n",
		"CONNECT app.internal.example:80/x HTTP/1.1\r\n\r\n",
		"CONNECT /app.internal.example:80 HTTP/1.1\r\n\r\n",
		"CONNECT http://app.internal.example:80 HTTP/1.1\r\n\r\n",
		"CONNECT 0x64.0x40.0.5:80 HTTP/1.1\r\n\r\n",
		"CONNECT 1681915909:80 HTTP/1.1\r\n\r\n",
		"CONNECT 100.64.0.5.:80 HTTP/1.1\r\n\r\n",
		"CONNECT app.internal.example\x00.evil:80 HTTP/1.1\r\n\r\n",
		"CONNECT app.internal.example:80 HTTP/1.1\r\nHost: other-env.internal.example:80\r\nProxy-Authorization: Basic eDp5\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"CONNECT app.internal.example:80 HTTP/1.1\r\n\r\nCONNECT other-env.internal.example:80 HTTP/1.1\r\n\r\n",
		"CONNECT  app.internal.example:80  HTTP/1.1\r\n\r\n",
		"CONNECT app.internal.example:80 HTTP/1.0\n\n",
		"CONNECT app.internal.example:80 HTTP/2.0\r\n\r\n",
		"CONNECT " + strings.Repeat("a.", 200) + "internal.example:80 HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	fp := newFuzzProxy(f)
	f.Fuzz(func(t *testing.T, input []byte) { fp.exchange(t, input) })
}

func FuzzHTTPForward(f *testing.F) {
	for _, s := range []string{
		"GET http://app.internal.example/ HTTP/1.1\r\nHost: app.internal.example\r\n\r\n",
		"GET http://app.internal.example/ HTTP/1.1\r\nHost: other-env.internal.example\r\n\r\n",
		"GET http://other-env.internal.example/ HTTP/1.1\r\nHost: app.internal.example\r\n\r\n",
		"GET http://app.internal.example@other-env.internal.example/ HTTP/1.1\r\n\r\n",
		"GET http://other-env.internal.example#@app.internal.example/ HTTP/1.1\r\n\r\n",
		"GET http://app.internal.example\\@other-env.internal.example/ HTTP/1.1\r\n\r\n",
		"GET http:/\\other-env.internal.example/ HTTP/1.1\r\n\r\n",
		"GET //other-env.internal.example/ HTTP/1.1\r\nHost: other-env.internal.example\r\n\r\n",
		"GET http://app.internal.example:80:80/ HTTP/1.1\r\n\r\n",
		"GET http://app.internal.example:8080/ HTTP/1.1\r\n\r\n",
		"GET http://[::ffff:100.64.0.5]/ HTTP/1.1\r\n\r\n",
		"GET http://100.64.0.9/ HTTP/1.1\r\n\r\n",
		"GET https://secure.internal.example/ HTTP/1.1\r\n\r\n",
		"GET ftp://app.internal.example/ HTTP/1.1\r\n\r\n",
		"GET HTTP://APP.INTERNAL.EXAMPLE./ HTTP/1.1\r\n\r\n",
		"GET http://app.internal.example%2f..%2fother/ HTTP/1.1\r\n\r\n",
		"GET http://app.internal.example//admin/../x HTTP/1.1\r\n\r\n",
		"POST http://app.internal.example/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\nGET http://other-env.internal.example/ HTTP/1.1\r\n\r\n",
		"POST http://app.internal.example/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n\r\n",
		"GET http://app.internal.example/ HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET http://app.internal.example/ HTTP/1.1\r\nConnection: close, Host\r\n\r\n",
		"GET http://app.internal.example/ HTTP/1.1\r\n\r\nGET http://other-env.internal.example/ HTTP/1.1\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: app.internal.example\r\n\r\n",
		"GET /?x=http://app.internal.example/ HTTP/1.1\r\n\r\n",
		"GET http://ghost.internal.example/ HTTP/1.1\r\n\r\n",
		"GET http://flaky.internal.example:443/ HTTP/1.1\r\n\r\n",
		"GET http://stray.internal.example:443/ HTTP/1.1\r\n\r\n",
		"GET http://app.internal.example/ HTTP/1.1\r\nHost: app.internal.example\r\nHost: other-env.internal.example\r\n\r\n",
		"GET http://app.internal.example/\x00 HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	fp := newFuzzProxy(f)
	f.Fuzz(func(t *testing.T, input []byte) { fp.exchange(t, input) })
}

// socksRequest is a whole SOCKS5 exchange: greeting, then request.
func socksRequest(cmd, atyp byte, addr []byte, port uint16) []byte {
	b := []byte{0x05, 0x01, 0x00, 0x05, cmd, 0x00, atyp}
	b = append(b, addr...)
	return binary.BigEndian.AppendUint16(b, port)
}

func socksDomain(name string) []byte { return append([]byte{byte(len(name))}, name...) }

func FuzzSOCKS5(f *testing.F) {
	v4 := func(s string) []byte { a := netip.MustParseAddr(s).As4(); return a[:] }
	v6 := func(s string) []byte { a := netip.MustParseAddr(s).As16(); return a[:] }
	for _, b := range [][]byte{
		socksRequest(0x01, 0x03, socksDomain("app.internal.example"), 80),
		socksRequest(0x01, 0x03, socksDomain("other-env.internal.example"), 80),
		socksRequest(0x01, 0x03, socksDomain("app.internal.example"), 81),
		socksRequest(0x01, 0x03, socksDomain("APP.internal.example."), 80),
		socksRequest(0x01, 0x03, socksDomain("app.internal.example\x00other"), 80),
		socksRequest(0x01, 0x03, socksDomain("100.64.0.9"), 80),
		socksRequest(0x01, 0x03, socksDomain("[::ffff:100.64.0.9]"), 80),
		socksRequest(0x01, 0x03, socksDomain(""), 80),
		socksRequest(0x01, 0x03, socksDomain(strings.Repeat("a", 255)), 80),
		socksRequest(0x01, 0x01, v4("100.64.0.5"), 80),
		socksRequest(0x01, 0x01, v4("100.64.0.9"), 80),
		socksRequest(0x01, 0x01, v4("192.0.2.10"), 443),
		socksRequest(0x01, 0x04, v6("::ffff:100.64.0.9"), 80),
		socksRequest(0x01, 0x04, v6("::ffff:192.0.2.10"), 443),
		socksRequest(0x01, 0x03, socksDomain("app.internal.example"), 0),
		socksRequest(0x02, 0x03, socksDomain("app.internal.example"), 80), // BIND
		socksRequest(0x03, 0x01, v4("100.64.0.5"), 80),                    // UDP ASSOCIATE
		socksRequest(0x01, 0x05, v4("100.64.0.5"), 80),                    // unknown address type
		{0x05, 0x00},                   // no methods
		{0x05, 0x01, 0x02},             // username/password only
		{0x05, 0xff},                   // 255 methods announced, none sent
		{0x05, 0x01, 0x00, 0x04, 0x01}, // request with SOCKS4 version
		{0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x03, 0xff, 'a'}, // domain shorter than announced
		append(socksRequest(0x01, 0x03, socksDomain("app.internal.example"), 80), "GET / HTTP/1.1\r\n\r\n"...),
	} {
		f.Add(b)
	}
	fp := newFuzzProxy(f)
	f.Fuzz(func(t *testing.T, input []byte) { fp.exchange(t, input) })
}
