package pipe_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/pipe"
)

// A client that half-closes after its request still reads the whole
// answer through the join, and both ends close afterwards.
func TestJoinPassesHalfCloseAndClosesBoth(t *testing.T) {
	server, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	go func() {
		c, err := server.Accept()
		if err != nil {
			return
		}
		req, _ := io.ReadAll(c) // until the client's half-close
		c.Write(append([]byte("echo: "), req...))
		c.Close()
	}()
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
		out, err := net.Dial("tcp", server.Addr().String())
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
