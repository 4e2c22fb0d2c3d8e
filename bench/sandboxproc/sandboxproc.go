// Package sandboxproc runs a benchmark's sandbox tailnet in a child
// process, so that the benchmark's own process holds only what it
// measures (its nodes and tailgate's bookkeeping) and the control server,
// DERP relay and the sandbox's own devices are measured apart, the way a
// customer's control plane lives outside tailgate serve.
//
// The child is the benchmark's own binary started again (a test binary, or
// any program: the child's arguments are a test binary's): TestMain (or
// main) calls [Child] first, which, in the child, runs the sandbox and
// never returns.
//
//	func TestMain(m *testing.M) { sandboxproc.Child(); sandboxtest.Main(m) }
//
//	func BenchmarkX(b *testing.B) {
//		p := sandboxproc.Start(b, policy)
//		// join nodes to p.ControlURL, connect with p.APIURL and p.APIToken
//		rss, heap := p.RSSBytes(), p.HeapBytes("")
//	}
package sandboxproc

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/bench/measure"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

// childEnv marks the child process; policyEnv carries the policy it sets.
const (
	childEnv  = "TAILGATE_BENCH_SANDBOX_CHILD"
	policyEnv = "TAILGATE_BENCH_SANDBOX_POLICY"
)

// hello is the child's first line on stdout: where its sandbox is.
type hello struct {
	ControlURL string `json:"control_url"`
	APIURL     string `json:"api_url"`
	APIToken   string `json:"api_token"`
	Err        string `json:"error,omitempty"`
}

// Proc is a sandbox tailnet in a child process.
type Proc struct {
	// ControlURL is the sandbox's coordination server.
	ControlURL string
	// APIURL is its Tailscale API stand-in; APIToken an admin token of it.
	APIURL, APIToken string

	cmd  *exec.Cmd
	stop context.CancelFunc // closes in (see Launch)
	in   *os.File
	out  *bufio.Reader
}

// Start starts the child and waits until its sandbox is up with policy
// (the sandbox's default, allow-all, when empty) stored. It also confines
// this process's nodes as the sandbox confines its own
// ([sandbox.ConfineNodes]). The child stops when the benchmark ends.
func Start(tb testing.TB, policy string) *Proc {
	tb.Helper()
	p, err := Launch(policy)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

// Launch is Start for a program that is not a test: the caller closes
// the child.
func Launch(policy string) (_ *Proc, err error) {
	sandbox.ConfineNodes()
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// Closing the child's stdin ends it; exec kills it if it has not
	// closed its sandbox 30 s later.
	cmdCtx, stop := context.WithCancel(context.Background())
	cmd := exec.CommandContext(cmdCtx, os.Args[0], "-test.run=^$")
	cmd.Cancel = func() error { return inW.Close() }
	cmd.WaitDelay = 30 * time.Second
	cmd.Env = append(os.Environ(), childEnv+"=1", policyEnv+"="+policy)
	cmd.Stdin, cmd.Stderr = inR, os.Stderr
	outR, err := cmd.StdoutPipe()
	if err != nil {
		stop()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		stop()
		return nil, err
	}
	inR.Close()
	p := &Proc{cmd: cmd, stop: stop, in: inW, out: bufio.NewReader(outR)}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	line, err := p.out.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("sandbox child: %w", err)
	}
	var h hello
	if err := json.Unmarshal(line, &h); err != nil {
		return nil, fmt.Errorf("sandbox child said %q: %w", line, err)
	}
	if h.Err != "" {
		return nil, fmt.Errorf("sandbox child: %s", h.Err)
	}
	p.ControlURL, p.APIURL, p.APIToken = h.ControlURL, h.APIURL, h.APIToken
	return p, nil
}

// RSSBytes is the child's resident memory.
func (p *Proc) RSSBytes() int64 {
	return measure.RSSBytesOf(p.cmd.Process.Pid)
}

// HeapBytes is the child's live heap after a full collection; with
// profile set, the child also writes its heap profile to that file.
// It is 0 if the child does not answer.
func (p *Proc) HeapBytes(profile string) int64 {
	if _, err := fmt.Fprintf(p.in, "heap %s\n", profile); err != nil {
		return 0
	}
	line, err := p.out.ReadString('\n')
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	return n
}

// Close closes the child's stdin, which ends it, and waits for it (up to
// 30 s for it to close its sandbox, then it is killed).
func (p *Proc) Close() {
	p.stop()
	p.cmd.Wait()
}

// Child runs the sandbox and never returns when this process is a
// benchmark's sandbox child; otherwise it returns at once. Call it first
// thing in TestMain.
func Child() {
	if os.Getenv(childEnv) == "" {
		return
	}
	os.Exit(child())
}

// child serves one sandbox: it says where on stdout, then answers "heap
// [file]" lines on stdin with its live heap in bytes, until stdin closes.
func child() int {
	measure.ProfileDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	sb, err := sandbox.Start(ctx, sandbox.Options{})
	cancel()
	enc := json.NewEncoder(os.Stdout)
	if err != nil {
		enc.Encode(hello{Err: err.Error()})
		return 1
	}
	defer sb.Close()
	if pol := os.Getenv(policyEnv); pol != "" {
		sb.API().SetPolicy([]byte(pol))
	}
	enc.Encode(hello{ControlURL: sb.ControlURL(), APIURL: sb.APIURL(), APIToken: sb.NewAPIToken()})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		if cmd != "heap" {
			fmt.Fprintf(os.Stderr, "sandbox child: unknown command %q\n", cmd)
			fmt.Println(0)
			continue
		}
		if arg != "" {
			if err := measure.WriteHeapProfile(filepath.Dir(arg), filepath.Base(arg)); err != nil {
				fmt.Fprintf(os.Stderr, "sandbox child: %v\n", err)
			}
		}
		fmt.Println(measure.HeapBytes())
	}
	return 0
}
