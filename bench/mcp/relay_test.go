package mcp_bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/bench/measure"
)

// The relay leg is the floor of what ToolCall measures for the gateway in
// its own process: a process between the client and the stdio target that
// does nothing but pass messages. It is net/http and a pipe, ~60 lines:
// a POSTed message is written to the echo server's stdin as one line and
// answered with the line from its stdout that carries the same id (202 for
// a notification). No sessions, no routing, no policy, no log. Whatever a
// gateway process adds over direct stdio, this adds too: the client's
// HTTP round trip, one more process to wake, one more pipe. So
// proc-vs-relay-* is the gateway's own share, and relay-p50-ratio is what
// any separate-process hop costs on the machine measured.

// relayEnv, set to a file name, makes this binary a relay process; it
// writes its listening address to that file.
const relayEnv = "MCPBENCH_RELAY"

// The stdio relay splits the relay's cost in two: a process that copies
// the client's stdin to the echo server's and the server's stdout back,
// byte for byte, with no HTTP at all. The client reaches it as it reaches
// the server directly (the SDK's CommandTransport), so stdio-relay-* is
// what one more process on the path costs, and what the HTTP relay costs
// beyond it is the HTTP hop: the client's streamable HTTP transport and
// an HTTP server, where direct stdio has a pipe.
const stdioRelayEnv = "MCPBENCH_STDIO_RELAY"

// stdioRelayChild copies between its own stdio and the echo server's
// until either side closes. Both directions go through this process's
// pipes (the server does not inherit our stdin), as through a gateway.
func stdioRelayChild() int {
	stdin, stdout, err := startEchoServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { io.Copy(stdin, os.Stdin); stdin.Close() }()
	io.Copy(os.Stdout, stdout)
	return 0
}

// startEchoServer starts this binary as the echo server, a child process
// the relays talk to through its stdin and stdout.
func startEchoServer() (stdin io.WriteCloser, stdout io.Reader, err error) {
	cmd := echoServerCmd()
	cmd.Stderr = os.Stderr
	if stdin, err = cmd.StdinPipe(); err != nil {
		return nil, nil, err
	}
	if stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, nil, err
	}
	return stdin, stdout, cmd.Start()
}

// relayChild runs the relay until killed.
func relayChild(addrFile string) int {
	stdin, stdout, err := startEchoServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := &relay{stdin: stdin, waiting: map[string]chan []byte{}}
	go r.read(stdout)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Written whole, then renamed, so the parent never reads half of it.
	if err := os.WriteFile(addrFile+".tmp", []byte(l.Addr().String()), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.Rename(addrFile+".tmp", addrFile); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintln(os.Stderr, http.Serve(l, r))
	return 1
}

// relay passes POSTed JSON-RPC messages to a stdio server.
type relay struct {
	wmu   sync.Mutex
	stdin io.Writer

	mu      sync.Mutex
	waiting map[string]chan []byte // by the raw id of a request
}

// messageID is the raw id of a JSON-RPC message; empty for a notification.
func messageID(msg []byte) string {
	var m struct{ ID json.RawMessage }
	if json.Unmarshal(msg, &m) != nil {
		return ""
	}
	return string(m.ID)
}

// read hands each line of the server's stdout to the request waiting
// for its id, and drops the rest (the echo server sends nothing else).
func (r *relay) read(stdout io.Reader) {
	br := bufio.NewReaderSize(stdout, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay: the server's stdout:", err)
			os.Exit(1)
		}
		id := messageID(line)
		r.mu.Lock()
		ch := r.waiting[id]
		delete(r.waiting, id)
		r.mu.Unlock()
		if ch != nil {
			ch <- line
		}
	}
}

func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := messageID(body)
	var reply chan []byte
	if id != "" {
		reply = make(chan []byte, 1)
		r.mu.Lock()
		r.waiting[id] = reply
		r.mu.Unlock()
	}
	r.wmu.Lock()
	_, err = r.stdin.Write(append(bytes.TrimSpace(body), '\n'))
	r.wmu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if reply == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	select {
	case line := <-reply:
		w.Header().Set("Content-Type", "application/json")
		w.Write(line)
	case <-req.Context().Done():
		r.mu.Lock()
		delete(r.waiting, id)
		r.mu.Unlock()
	}
}

// startRelayProc starts the relay in a process of its own and returns its
// URL and the CPU time the process has used so far; it is killed when the
// benchmark ends.
func startRelayProc(b *testing.B) (url string, cpu func() time.Duration) {
	addrFile := filepath.Join(b.TempDir(), "relay-addr")
	ctx, stop := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, exe())
	cmd.Env = append(os.Environ(), relayEnv+"="+addrFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		stop()
		b.Fatal(err)
	}
	b.Cleanup(func() { stop(); cmd.Wait() })
	cpu = func() time.Duration { return measure.CPUTimeOf(cmd.Process.Pid) }
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if addr, err := os.ReadFile(addrFile); err == nil {
			return "http://" + string(addr) + "/mcp", cpu
		}
		if time.Now().After(deadline) {
			b.Fatal("relay process: no address after 30s")
		}
	}
}
