package pipe_test

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/pipe"
	"github.com/tailgate-dev/tailgate/internal/testtcp"
)

// echoOnce reads a request until the client's half-close and answers
// "echo: " and the request.
func echoOnce(c net.Conn) {
	req, _ := io.ReadAll(c)
	c.Write(append([]byte("echo: "), req...))
	c.Close()
}

// A client that half-closes after its request still reads the whole
// answer through the join, and both ends close afterwards.
func TestJoinPassesHalfCloseAndClosesBoth(t *testing.T) {
	server := testtcp.Serve(t, echoOnce)
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	joined := make(chan struct{})
	go func() {
		in, err := front.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", server)
		if err != nil {
			return
		}
		pipe.Join(in, out)
		close(joined)
	}()
	c, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "echo: hello" {
		t.Fatalf("answer %q, %v", got, err)
	}
	select {
	case <-joined:
	case <-time.After(5 * time.Second):
		t.Fatal("Join did not return after both sides ended")
	}
}

// Closing a group cuts the pairs it carries, and a pair joined after the
// group closed is closed at once.
func TestGroupCloseCutsItsPairs(t *testing.T) {
	var g pipe.Group
	a1, a2 := net.Pipe()
	b1, b2 := net.Pipe()
	done := make(chan struct{})
	go func() { g.Join(a2, b1); close(done) }()
	a1.Write([]byte("x")) // the pair carries bytes
	buf := make([]byte, 1)
	if _, err := b2.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("through the pair: %q %v", buf, err)
	}
	g.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not cut the pair")
	}
	if _, err := a1.Read(buf); err == nil {
		t.Error("the client side is still open")
	}
	c1, c2 := net.Pipe()
	g.Join(c1, c2)
	if _, err := c1.Write([]byte("x")); err == nil {
		t.Error("a pair joined after Close was not closed")
	}
}

// Forward joins every accepted connection to the one dial opens, closes
// an accepted connection whose dial failed, returns once its listener
// closes, and counts its goroutines in the WaitGroup.
func TestForwardJoinsEachConnectionToItsDial(t *testing.T) {
	server := testtcp.Serve(t, echoOnce)
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fail := make(chan bool, 1)
	dial := func() (net.Conn, error) {
		if <-fail {
			return nil, errors.New("refused")
		}
		return net.Dial("tcp", server)
	}
	var g pipe.Group
	var wg sync.WaitGroup
	returned := make(chan struct{})
	go func() {
		pipe.Forward(front, dial, &g, &wg)
		close(returned)
	}()
	exchange := func(msg string) (string, error) {
		c, err := net.Dial("tcp", front.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte(msg))
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		return string(got), err
	}
	for _, msg := range []string{"one", "two"} {
		fail <- false
		if got, err := exchange(msg); err != nil || got != "echo: "+msg {
			t.Errorf("answer %q, %v; want %q", got, err, "echo: "+msg)
		}
	}
	fail <- true
	// Closed with the request unread: an end of stream or a reset, but
	// never an answer, and never the 5 s deadline.
	if got, err := exchange("refused"); got != "" || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a connection whose dial failed got %q, %v; want it closed", got, err)
	}
	front.Close()
	<-returned
	wg.Wait() // every connection's goroutine has ended
}
