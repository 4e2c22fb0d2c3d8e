package handoff

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/pipe"
)

func TestScanServesOnlyPlainBodilessHeads(t *testing.T) {
	servable := []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD /x%2Fy?y=1&z=%zz HTTP/1.1\r\nHost: a.example:8080\r\nAccept: */*\r\n\r\n",
		"OPTIONS /p HTTP/1.1\r\nhost: a\r\nOrigin: https://b\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Tab: a\tb\r\n\r\n",
	}
	for _, h := range servable {
		n, complete := scan([]byte(h + "GET / HTTP/1.1\r\n"))
		if n != len(h) || !complete {
			t.Errorf("scan(%q) = %d, %v; want %d, true", h, n, complete, len(h))
		}
	}
	handOff := map[string]string{
		"a body (Content-Length)":      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"a body (chunked)":             "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"an upgrade":                   "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"Expect":                       "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
		"POST":                         "POST / HTTP/1.1\r\nHost: a\r\n\r\n",
		"a lower-case method":          "get / HTTP/1.1\r\nHost: a\r\n\r\n",
		"HTTP/1.0":                     "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
		"absolute form":                "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"asterisk form":                "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"no Host":                      "GET / HTTP/1.1\r\n\r\n",
		"two Hosts":                    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"an invalid Host":              "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"obs-fold":                     "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
		"a space before the colon":     "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
		"a bare LF in a line":          "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
		"a bare CR in a value":         "GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n",
		"a NUL in a value":             "GET / HTTP/1.1\r\nHost: a\r\nX: b\x00\r\n\r\n",
		"a control byte in the target": "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
		"a fragment":                   "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
		"two spaces":                   "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
		"an empty header name":         "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n",
		"a non-token header name":      "GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n",
		"non-ASCII in the target":      "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
		"bare LF line endings":         "GET / HTTP/1.1\nHost: a\n\n",
		"a broken escape":              "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"a cut escape":                 "GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n",
	}
	for name, h := range handOff {
		if n, complete := scan([]byte(h)); n != 0 || !complete {
			t.Errorf("%s: scan = %d, %v; want a hand-off (0, true)", name, n, complete)
		}
	}
	for _, partial := range []string{"", "GE", "GET / HTTP/1.1\r\nHost: a\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r"} {
		if n, complete := scan([]byte(partial)); n != 0 || complete {
			t.Errorf("scan(%q) = %d, %v; want more bytes (0, false)", partial, n, complete)
		}
	}
	// A bad line is refused before the head is complete.
	if n, complete := scan([]byte("POST / HTTP/1.1\r\nHost: a\r\n")); n != 0 || !complete {
		t.Errorf("unfinished POST head: scan = %d, %v; want a hand-off", n, complete)
	}
}

// FuzzScanAgreesWithNetHTTP: a head scan lets through is one net/http
// reads as a bodiless request with the same method, target, Host and
// length — the property that makes serving it elsewhere safe.
func FuzzScanAgreesWithNetHTTP(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD /x?y HTTP/1.1\r\nHost: a:1\r\nX: \t v \r\n\r\n",
		"OPTIONS /p HTTP/1.1\r\nHost: [::1]:80\r\nCookie: a=b\r\nCookie: c=d\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _ := scan(b)
		if n == 0 {
			return
		}
		br := bufio.NewReader(bytes.NewReader(b[:n]))
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("scan served %q; net/http refuses it: %v", b[:n], err)
		}
		if req.ContentLength != 0 || req.Body != http.NoBody && req.Body != nil {
			if body, _ := io.ReadAll(req.Body); len(body) > 0 || req.ContentLength != 0 {
				t.Fatalf("scan served %q; net/http reads a body", b[:n])
			}
		}
		if br.Buffered() != 0 {
			t.Fatalf("scan served %d bytes; net/http's head is %d bytes shorter", n, br.Buffered())
		}
		line := string(b[:bytes.Index(b, []byte("\r\n"))])
		if want := req.Method + " " + req.RequestURI + " HTTP/1.1"; line != want {
			t.Fatalf("request line %q; net/http read %q", line, want)
		}
		if req.Host == "" && !strings.Contains(strings.ToLower(string(b[:n])), "\nhost:") {
			t.Fatalf("served without a Host: %q", b[:n])
		}
	})
}

// pair is a connection whose far side the test writes to and reads from.
func pair(t *testing.T) (near, far net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	far, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	near, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { near.Close(); far.Close() })
	return near, far
}

func TestConnHandsOffAtTheFirstRequestWithABody(t *testing.T) {
	near, far := pair(t)
	l := pipe.NewListener(near.LocalAddr())
	defer l.Close()
	c := NewConn(near, l, nil)

	get := "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
	post := "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
	after := "GET /c HTTP/1.1\r\nHost: h\r\n\r\n"
	// One write: the fast side's read brings in the POST and what
	// follows, which it must never be shown.
	if _, err := far.Write([]byte(get + get + post + after)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.LimitReader(c, int64(2*len(get))))
	if err != nil || string(got) != get+get {
		t.Fatalf("fast side read %q, %v; want the two GET heads", got, err)
	}
	buf := make([]byte, 64)
	if n, err := c.Read(buf); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read at the POST = %d, %v; want 0, net.ErrClosed", n, err)
	}
	if !c.HandedOff() {
		t.Fatal("HandedOff() = false after the POST")
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		hc, _ := l.Accept()
		accepted <- hc
	}()
	c.Close()
	hc := <-accepted
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(io.LimitReader(hc, int64(len(post+after))))
	if err != nil || string(rest) != post+after {
		t.Fatalf("net/http side read %q, %v; want the POST and what follows, byte for byte", rest, err)
	}
	// And the connection still works both ways.
	go hc.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
	far.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(far), nil)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("response through the handed-off connection: %v, %v", resp, err)
	}
}

func TestConnHandsOffWhenNoLongerServable(t *testing.T) {
	near, far := pair(t)
	l := pipe.NewListener(near.LocalAddr())
	defer l.Close()
	servable := true
	c := NewConn(near, l, func() bool { return servable })
	get := "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
	far.Write([]byte(get))
	if got, err := io.ReadAll(io.LimitReader(c, int64(len(get)))); err != nil || string(got) != get {
		t.Fatalf("read %q, %v", got, err)
	}
	servable = false // a reload took the bind off the fast front
	far.Write([]byte(get))
	if _, err := c.Read(make([]byte, 64)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after the change: %v; want net.ErrClosed", err)
	}
	go c.Close()
	hc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(io.LimitReader(hc, int64(len(get)))); string(got) != get {
		t.Fatalf("net/http side read %q; want the second GET", got)
	}
}

func TestConnClosesWhenNotHandedOff(t *testing.T) {
	near, far := pair(t)
	l := pipe.NewListener(near.LocalAddr())
	defer l.Close()
	c := NewConn(near, l, nil)
	c.Close()
	far.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := far.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("far side read %d, %v; want EOF after Close", n, err)
	}
}

func TestConnHandsOffAnOverlongHead(t *testing.T) {
	near, far := pair(t)
	l := pipe.NewListener(near.LocalAddr())
	defer l.Close()
	c := NewConn(near, l, nil)
	head := "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("a", MaxHead) + "\r\n\r\n"
	go far.Write([]byte(head))
	if _, err := c.Read(make([]byte, 64)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a %d-byte head: %v; want a hand-off", len(head), err)
	}
	go c.Close()
	hc, _ := l.Accept()
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(io.LimitReader(hc, int64(len(head)))); string(got) != head {
		t.Fatalf("net/http side got %d bytes of the %d-byte head", len(got), len(head))
	}
}

func TestClosedListenerClosesWhatItIsGiven(t *testing.T) {
	near, far := pair(t)
	l := pipe.NewListener(near.LocalAddr())
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v", err)
	}
	Give(l, near)
	far.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := far.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection given to a closed listener stays open: %v", err)
	}
}

// TestVisibleValueAgreesWithTheByteLoop puts every byte value at every
// position of values around the word size, among clean bytes of several
// kinds (letters, tabs, obs-text, the bytes next to the limits): the word
// at a time test must refuse exactly what the byte loop refuses.
func TestVisibleValueAgreesWithTheByteLoop(t *testing.T) {
	for _, fill := range []byte{'a', '\t', ' ', 0x80, 0xff, 0x7e, '!'} {
		for n := 1; n <= 25; n++ {
			v := bytes.Repeat([]byte{fill}, n)
			for at := range n {
				for c := range 256 {
					v[at] = byte(c)
					if got, want := visibleValue(v), visibleBytes(v); got != want {
						t.Fatalf("value %q: visibleValue %v, byte loop %v", v, got, want)
					}
				}
				v[at] = fill
			}
		}
	}
	// Two bad bytes in one word, and a bad byte after a clean word.
	for _, v := range []string{"abc\x00\x7fdefgh", "abcdefgh\x01", "abcdefgh\tijklmnop\x7f", "\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f"} {
		if visibleValue([]byte(v)) {
			t.Errorf("value %q passed", v)
		}
	}
}
