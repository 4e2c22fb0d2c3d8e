package h1pool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/testtcp"
)

var dialer = &net.Dialer{Timeout: 5 * time.Second}

// newPool is a Pool whose fallback is counted, so a test can tell which
// path carried a request.
func newPool(t *testing.T) (*Pool, *countingTransport) {
	t.Helper()
	fb := &countingTransport{next: &http.Transport{DialContext: dialer.DialContext}}
	p := New(fb, dialer.DialContext)
	t.Cleanup(p.CloseIdleConnections)
	return p, fb
}

type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// get sends method to url through p and returns the status and body.
func get(t *testing.T, p *Pool, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// countConns counts the connections srv accepted.
func countConns(srv *httptest.Server) *atomic.Int64 {
	var n atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func TestSequentialRequestsShareOneUpstreamConnection(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "5")
			return
		}
		if r.URL.Path == "/empty" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	conns := countConns(srv)
	srv.Start()
	defer srv.Close()
	p, fb := newPool(t)

	for i := 0; i < 20; i++ {
		path := fmt.Sprintf("/n%d", i)
		method := []string{http.MethodGet, http.MethodHead, http.MethodOptions}[i%3]
		if i%5 == 4 {
			path = "/empty"
		}
		status, body := get(t, p, method, srv.URL+path)
		want := "hello " + path
		switch {
		case path == "/empty":
			want = ""
		case method == http.MethodHead:
			want = ""
		}
		if status/100 != 2 || body != want {
			t.Fatalf("%s %s = %d %q, want 2xx %q", method, path, status, body, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("upstream saw %d connections for 20 sequential requests, want 1 (keep-alive)", n)
	}
	if n := fb.n.Load(); n != 0 {
		t.Errorf("%d bodiless GET/HEAD/OPTIONS went to the fallback transport, want 0", n)
	}
}

func TestRequestsTheLeanPathDoesNotTakeStillWork(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, b)
	}))
	defer srv.Close()
	p, fb := newPool(t)

	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		req, _ := http.NewRequest(method, srv.URL, strings.NewReader("payload"))
		resp, err := p.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != method+" payload" {
			t.Errorf("%s answered %q", method, b)
		}
	}
	up, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	up.Header.Set("Upgrade", "websocket")
	if Lean(up) {
		t.Error("an upgrade request was taken by the lean path, which cannot hand over the connection")
	}
	tls, _ := http.NewRequest(http.MethodGet, "https://example.test/", nil)
	if Lean(tls) {
		t.Error("an https request was taken by the lean path, which speaks plain HTTP only")
	}
	if n := fb.n.Load(); n != 4 {
		t.Errorf("fallback carried %d requests, want the 4 with bodies", n)
	}
}

// rawUpstream is an upstream that answers with whatever bytes serve
// writes on each accepted connection.
func rawUpstream(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	return "http://" + testtcp.Serve(t, func(c net.Conn) {
		defer c.Close()
		serve(c, bufio.NewReader(c))
	})
}

// readRequest reads one request head and reports whether it got one.
func readRequest(br *bufio.Reader) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	req.Body.Close()
	return true
}

func TestAnIdleConnectionTheUpstreamClosedIsRetriedOnANewOne(t *testing.T) {
	var accepted atomic.Int64
	url := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		n := accepted.Add(1)
		if !readRequest(br) {
			return
		}
		// Keep-alive promised, then closed while idle: what an upstream
		// with a short idle timeout does.
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nconn %d\n", n)
	})
	p, _ := newPool(t)
	for i := 1; i <= 3; i++ {
		status, body := get(t, p, http.MethodGet, url+"/")
		if status != 200 || body != fmt.Sprintf("conn %d\n", i) {
			t.Fatalf("request %d = %d %q, want 200 from connection %d", i, status, body, i)
		}
		time.Sleep(20 * time.Millisecond) // let the close reach the pool's socket
	}
}

func TestAHostileUpstreamCannotFloodTheResponseHead(t *testing.T) {
	url := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if !readRequest(br) {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Flood: " + strings.Repeat("a", 8<<10) + "\r\n"
		for i := 0; i < 300; i++ { // 2.4 MiB of header
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	})
	p, _ := newPool(t)
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	resp, err := p.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("a 2.4 MiB response head was accepted")
	}
	if !errors.Is(err, errHeaderTooLarge) {
		t.Errorf("error = %v, want the header limit's", err)
	}
}

func TestInformationalAnswersAreSkipped(t *testing.T) {
	url := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for readRequest(br) {
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p, _ := newPool(t)
	for i := 0; i < 2; i++ {
		if status, body := get(t, p, http.MethodGet, url); status != 200 || body != "ok" {
			t.Fatalf("got %d %q, want the final 200 ok", status, body)
		}
	}
}

func TestAConnectionIsReusedOnlyWhenItsAnswerWasReadToTheEnd(t *testing.T) {
	var accepted atomic.Int64
	url := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		accepted.Add(1)
		for readRequest(br) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
		}
	})
	p, _ := newPool(t)

	// Closed after 3 of 10 bytes: the rest is still on the wire, so the
	// connection cannot carry another answer.
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 3)
	io.ReadFull(resp.Body, part)
	resp.Body.Close()

	if status, body := get(t, p, http.MethodGet, url); status != 200 || body != "0123456789" {
		t.Fatalf("after an abandoned answer: %d %q, want a whole fresh answer", status, body)
	}
	if status, body := get(t, p, http.MethodGet, url); status != 200 || body != "0123456789" {
		t.Fatalf("third request: %d %q", status, body)
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("upstream accepted %d connections, want 2 (the abandoned one dropped, the whole one reused)", n)
	}
}

func TestAnAnswerWithoutLengthEndsWithItsConnection(t *testing.T) {
	var accepted atomic.Int64
	url := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		accepted.Add(1)
		if readRequest(br) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nuntil close")
		}
	})
	p, _ := newPool(t)
	for i := 0; i < 2; i++ {
		if status, body := get(t, p, http.MethodGet, url); status != 200 || body != "until close" {
			t.Fatalf("got %d %q", status, body)
		}
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("upstream accepted %d connections, want 2: a close-delimited answer's connection is not reused", n)
	}
}

func TestACancelledRequestClosesItsUpstreamConnection(t *testing.T) {
	closed := make(chan struct{})
	url := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if !readRequest(br) {
			return
		}
		// Never answers; the read returns when the pool closes its side.
		c.Read(make([]byte, 1))
		close(closed)
	})
	p, _ := newPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	_, err := p.RoundTrip(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want the request's deadline", err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream connection stayed open after the request was cancelled")
	}
}

func TestGarbageAfterAnAnswerIsNotTakenForTheNextOne(t *testing.T) {
	var accepted atomic.Int64
	url := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		n := accepted.Add(1)
		for readRequest(br) {
			// Two answers to one request: the second must never be
			// handed to the next caller.
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", n)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforge")
		}
	})
	p, _ := newPool(t)
	for i := 1; i <= 2; i++ {
		time.Sleep(20 * time.Millisecond) // the forged answer is in the buffer by now
		if status, body := get(t, p, http.MethodGet, url); status != 200 || body != fmt.Sprint(i) {
			t.Fatalf("request %d = %d %q, want %q from a fresh connection", i, status, body, fmt.Sprint(i))
		}
	}
}
