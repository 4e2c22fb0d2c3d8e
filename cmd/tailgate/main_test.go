package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/pgtest"
)

// TestMain lets tests run the tailgate binary as a subprocess without a
// separate build: with TAILGATE_TEST_MAIN=1 the test binary is tailgate.
func TestMain(m *testing.M) {
	if os.Getenv("TAILGATE_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(pgtest.Main(m))
}

// subprocess is a running tailgate command whose output is collected.
type subprocess struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	seen  chan string
	done  chan error
}

func startTailgate(t *testing.T, env []string, args ...string) *subprocess {
	t.Helper()
	return startProcess(t, exec.Command(os.Args[0], args...), env)
}

// startProcess starts cmd, which runs this test binary as tailgate
// (perhaps through a wrapper such as ip netns exec), with env added.
func startProcess(t *testing.T, cmd *exec.Cmd, env []string) *subprocess {
	t.Helper()
	cmd.Env = append(os.Environ(), "TAILGATE_TEST_MAIN=1")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	p := &subprocess{cmd: cmd, seen: make(chan string, 1000), done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.seen <- sc.Text():
			default:
			}
		}
		io.Copy(io.Discard, out)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	return p
}

// waitLine waits for a line containing substr and returns it.
func (p *subprocess) waitLine(t *testing.T, ctx context.Context, substr string) string {
	t.Helper()
	for {
		select {
		case l := <-p.seen:
			if strings.Contains(l, substr) {
				return l
			}
		case <-ctx.Done():
			t.Fatalf("no line containing %q; output:\n%s", substr, p.output())
		}
	}
}

func (p *subprocess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// wait waits for the process to exit and returns its exit code.
func (p *subprocess) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		t.Fatalf("process did not exit within %v; output:\n%s", timeout, p.output())
		return -1
	}
}

func TestVersionNamesPinnedTailscale(t *testing.T) {
	p := startTailgate(t, nil, "version")
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d: %s", code, p.output())
	}
	if !strings.Contains(p.output(), "tailscale.com v1.102.5") {
		t.Errorf("version output does not name the pinned tailscale.com: %s", p.output())
	}
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	p := startTailgate(t, nil, "frobnicate")
	if code := p.wait(t, 30*time.Second); code != 2 {
		t.Fatalf("exit %d, want 2: %s", code, p.output())
	}
	if !strings.Contains(p.output(), `unknown command "frobnicate"`) {
		t.Errorf("output does not name the bad command: %s", p.output())
	}
}

// netListenFree returns a loopback port that was free a moment ago.
func netListenFree() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, nil
}
