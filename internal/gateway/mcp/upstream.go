package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Target is one MCP server behind a Backend. Exactly one of Stdio, HTTP,
// SSE or OpenAPI is set.
type Target struct {
	Name  string
	Stdio *Stdio
	// HTTP is a streamable HTTP endpoint URL, e.g. http://127.0.0.1:9000/mcp.
	HTTP string
	// SSE is a legacy SSE endpoint URL, e.g. http://127.0.0.1:9000/sse.
	SSE string
	// OpenAPI is an MCP server in the gateway's own process whose tools
	// call an HTTP API (package mcp/openapi); it is reached over an
	// in-memory connection.
	OpenAPI *sdk.Server
}

// Stdio is a local MCP server process.
type Stdio struct {
	Cmd  string
	Args []string
	// Env is added to the child's minimal environment (PATH and HOME).
	Env map[string]string
	// Dir is the working directory; empty means the gateway's.
	Dir string
	// PerSession starts a fresh process for every MCP session instead of
	// sharing one (config: reuse: false).
	PerSession bool
}

func (t Target) kind() string {
	switch {
	case t.Stdio != nil:
		return "stdio"
	case t.HTTP != "":
		return "mcp"
	case t.OpenAPI != nil:
		return "openapi"
	}
	return "sse"
}

var (
	errClosed = errors.New("gateway is shutting down this MCP backend")

	// Backoff bounds for restarting a target; variables so tests need not wait.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// healthyAfter is how long a process must run before its backoff resets.
	healthyAfter = 30 * time.Second
	// connectTimeout bounds starting a target and its initialize handshake
	// (npx may resolve a package first).
	connectTimeout = 2 * time.Minute
	// terminateGrace is how long a stdio server gets to exit after its
	// stdin is closed and it is sent SIGTERM.
	terminateGrace = 2 * time.Second
)

// upstream is a supervised connection to one target: a client session,
// and for stdio the process behind it. It (re)connects on demand and,
// when shared, restarts a dead process by itself with backoff.
type upstream struct {
	t      Target
	b      *Backend
	shared bool
	ds     *clientSession // the client session it serves; nil when shared
	calls  []*pendingCall // client requests out on it, oldest first (mu)
	notes  relayCount     // notifications seen and relayed (order.go)
	done   chan struct{}  // closed by close
	wg     sync.WaitGroup
	// live mirrors cs (with its stdio connection) for session's fast
	// path: a call on a connected target takes no lock.
	live    atomic.Pointer[liveConn]
	mu      sync.Mutex
	cs      *sdk.ClientSession
	proc    *exec.Cmd
	start   time.Time
	busy    bool          // a connect is in progress
	changed chan struct{} // closed and replaced when busy ends
	lastErr error         // the last connect's error, returned until nextAt
	nextAt  time.Time     // no connect before this (backoff)
	deaths  int
	closed  bool
}

// liveConn is an upstream's connected session and, for a stdio target,
// the connection under it (for raw calls).
type liveConn struct {
	cs  *sdk.ClientSession
	raw *stdioConn
}

func newUpstream(b *Backend, t Target, ds *clientSession) *upstream {
	u := &upstream{t: t, b: b, shared: ds == nil, ds: ds, done: make(chan struct{}), changed: make(chan struct{})}
	u.notes.init()
	return u
}

func backoff(n int) time.Duration {
	d := minBackoff
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// session returns a live client session, connecting (or waiting for a
// connect in progress) if there is none.
func (u *upstream) session(ctx context.Context) (*sdk.ClientSession, error) {
	if l := u.live.Load(); l != nil {
		select {
		case <-u.done:
			return nil, errClosed
		default:
			return l.cs, nil
		}
	}
	for {
		u.mu.Lock()
		if u.closed {
			u.mu.Unlock()
			return nil, errClosed
		}
		if u.cs != nil {
			cs := u.cs
			u.mu.Unlock()
			return cs, nil
		}
		if u.busy {
			ch := u.changed
			u.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		wait := time.Until(u.nextAt)
		if wait > 0 && u.lastErr != nil {
			// Failing to start is answered at once while backing off,
			// rather than holding every request for the backoff.
			err := u.lastErr
			u.mu.Unlock()
			return nil, err
		}
		u.busy = true
		u.mu.Unlock()
		if wait > 0 { // a restart after a death: the caller waits for it
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				u.endConnect(nil, nil, nil, nil)
				return nil, ctx.Err()
			case <-u.done:
				u.endConnect(nil, nil, nil, nil)
				return nil, errClosed
			}
		}
		cs, proc, raw, err := u.connect()
		u.b.metrics.start(u.t.Name, err)
		if err != nil {
			u.b.log.Warn("mcp target failed to start", "target", u.t.Name, "kind", u.t.kind(), "error", err)
		}
		if cs = u.endConnect(cs, proc, raw, err); cs == nil {
			if err == nil {
				err = errClosed
			}
			return nil, err
		}
		return cs, nil
	}
}

// endConnect publishes the outcome of a connect; it returns cs if it is
// now the live session (nil if the upstream was closed meanwhile).
func (u *upstream) endConnect(cs *sdk.ClientSession, proc *exec.Cmd, raw *stdioConn, err error) *sdk.ClientSession {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.busy = false
	close(u.changed)
	u.changed = make(chan struct{})
	if err != nil {
		u.deaths++
		u.lastErr = fmt.Errorf("mcp target %q: %w", u.t.Name, err)
		u.nextAt = time.Now().Add(backoff(u.deaths))
		return nil
	}
	if cs == nil {
		return nil
	}
	if u.closed {
		go stop(cs, proc)
		return nil
	}
	u.cs, u.proc, u.start, u.lastErr = cs, proc, time.Now(), nil
	u.live.Store(&liveConn{cs: cs, raw: raw})
	u.wg.Add(1)
	go u.watch(cs, proc)
	return cs
}

// watch waits for a session to end. A stdio process that exits (or is
// killed) ends its session; the process group is reaped and, for a
// shared target, a restart is scheduled with backoff.
func (u *upstream) watch(cs *sdk.ClientSession, proc *exec.Cmd) {
	defer u.wg.Done()
	cs.Wait()
	stop(cs, proc)
	u.mu.Lock()
	if u.cs != cs {
		u.mu.Unlock()
		return
	}
	u.cs, u.proc = nil, nil
	u.live.Store(nil)
	if time.Since(u.start) > healthyAfter {
		u.deaths = 0
	}
	u.deaths++
	u.nextAt = time.Now().Add(backoff(u.deaths))
	closed := u.closed
	u.mu.Unlock()
	if closed {
		return
	}
	u.b.log.Warn("mcp target connection ended; restarting", "target", u.t.Name, "kind", u.t.kind(), "restart_in", backoff(u.deaths).String())
	if u.shared && u.t.Stdio != nil {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-u.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		u.session(ctx) // errors are logged by session and retried on next use
		cancel()
	}
}

// drop forgets a session that failed at the transport level (an HTTP
// upstream that went away), so the next call reconnects.
func (u *upstream) drop(cs *sdk.ClientSession) {
	u.mu.Lock()
	if u.cs == cs {
		u.cs = nil
		u.live.Store(nil)
	}
	u.mu.Unlock()
	cs.Close()
}

// close stops the target for good and waits until its process group is gone.
func (u *upstream) close() {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		u.wg.Wait()
		return
	}
	u.closed = true
	close(u.done)
	cs, proc := u.cs, u.proc
	u.mu.Unlock()
	if cs != nil {
		stop(cs, proc)
	}
	u.wg.Wait()
}

// stop ends a session: for stdio, SIGTERM to the whole process group
// (npx starts node as a child), close (reaps the leader), then SIGKILL to
// whatever of the group is left.
func stop(cs *sdk.ClientSession, proc *exec.Cmd) {
	if proc != nil && proc.Process != nil {
		syscall.Kill(-proc.Process.Pid, syscall.SIGTERM)
	}
	cs.Close()
	if proc != nil && proc.Process != nil {
		syscall.Kill(-proc.Process.Pid, syscall.SIGKILL)
	}
}

// rawConn is cs's stdio connection, if cs is u's live session of a stdio
// target; nil otherwise (the caller then goes through the SDK).
func (u *upstream) rawConn(cs *sdk.ClientSession) *stdioConn {
	if l := u.live.Load(); l != nil && l.cs == cs {
		return l.raw
	}
	return nil
}

func (u *upstream) connect() (*sdk.ClientSession, *exec.Cmd, *stdioConn, error) {
	// The context lives as long as the session: the SSE transport holds
	// its event stream on it. Only the handshake is bounded.
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(connectTimeout, cancel)
	defer timer.Stop()
	go func() {
		select {
		case <-u.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var tr sdk.Transport
	var proc *exec.Cmd
	var stdio *stdioTransport
	switch {
	case u.t.Stdio != nil:
		proc = u.command()
		stdio = &stdioTransport{cmd: proc, progress: u.relayRawProgress, seen: &u.notes.seen}
		tr = stdio
	case u.t.HTTP != "":
		// The standalone stream carries what the target says outside a
		// request (list changes, resource updates); a shared connection
		// has no one session to give it to but listens all the same.
		tr = &sdk.StreamableClientTransport{Endpoint: u.t.HTTP, HTTPClient: countingClient(u.b.httpClient, &u.notes)}
	case u.t.OpenAPI != nil:
		// The server side ends when the client side is closed.
		client, server := sdk.NewInMemoryTransports()
		if _, err := u.t.OpenAPI.Connect(ctx, server, nil); err != nil {
			cancel()
			return nil, nil, nil, err
		}
		tr = client
	default:
		tr = &sdk.SSEClientTransport{Endpoint: u.t.SSE, HTTPClient: countingClient(u.b.httpClient, &u.notes)}
	}
	cs, err := u.targetClient().Connect(ctx, tr, &sdk.ClientSessionOptions{ProtocolVersion: upstreamProtocolVersion})
	if err == nil {
		err = u.restore(ctx, cs)
	}
	if err != nil {
		cancel()
		if cs != nil {
			cs.Close()
		}
		if proc != nil && proc.Process != nil {
			syscall.Kill(-proc.Process.Pid, syscall.SIGKILL)
			proc.Wait()
		}
		return nil, nil, nil, err
	}
	go func() { cs.Wait(); cancel() }()
	var raw *stdioConn
	if stdio != nil {
		raw = stdio.conn
	}
	return cs, proc, raw, nil
}

// restore asks a new connection for what the client session it serves
// asked before (after a reload or a target restart): its logging level
// and its subscriptions to this target's resources. A target that
// refuses is logged, not fatal.
func (u *upstream) restore(ctx context.Context, cs *sdk.ClientSession) error {
	if u.ds == nil {
		return nil
	}
	u.ds.mu.Lock()
	level := u.ds.level
	var subs []string
	for uri := range u.ds.subs {
		subs = append(subs, uri)
	}
	u.ds.mu.Unlock()
	if level != "" && hasLogging(cs) {
		if err := cs.SetLoggingLevel(ctx, &sdk.SetLoggingLevelParams{Level: level}); err != nil {
			u.b.log.Warn("mcp target refused the session's logging level", "target", u.t.Name, "error", err)
		}
	}
	me := u.index()
	for _, uri := range subs {
		i, orig, ok := u.b.resourceOwnerKnown(uri)
		if !ok || i != me {
			continue
		}
		if err := cs.Subscribe(ctx, &sdk.SubscribeParams{URI: orig}); err != nil {
			u.b.log.Warn("mcp target refused a resubscription", "target", u.t.Name, "uri", orig, "error", err)
		}
	}
	return nil
}

// upstreamProtocolVersion is what the gateway asks targets for: the
// newest version with the initialize handshake, which every server in
// use today speaks.
const upstreamProtocolVersion = "2025-06-18"

// command builds the child process: its own process group (so the whole
// tree can be killed), and a minimal environment rather than the
// gateway's (which may hold tokens).
func (u *upstream) command() *exec.Cmd {
	s := u.t.Stdio
	cmd := exec.Command(s.Cmd, s.Args...)
	env := map[string]string{"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME")}
	if env["PATH"] == "" {
		env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
	}
	for k, v := range s.Env {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = &stderrLog{log: u.b.log, target: u.t.Name}
	return cmd
}

// stderrLog forwards a child's stderr to the gateway log, line by line,
// at debug level (servers print banners there).
type stderrLog struct {
	log    *slog.Logger
	target string
	buf    []byte
}

func (w *stderrLog) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := indexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.log.Debug("mcp target stderr", "target", w.target, "line", string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 4096 {
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
