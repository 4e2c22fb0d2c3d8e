// Package runner is the runner side of a tailgate run, for platforms that
// embed it in their own runner agent instead of shelling out to
// `tailgate run`. The tailgate CLI uses it too.
//
// A run started with [Client.Start] is ready to use: its proxy listens on
// this host's loopback ([Run.ProxyURL]: HTTP CONNECT, absolute-URI HTTP and
// SOCKS5 on one port), reaches only the environment's targets, resolves
// names only through the tailnet and dials only through it. The library
// sends heartbeats until [Run.End], which closes the proxy, takes the node
// off the tailnet, ends the run on the server and returns the network
// report.
//
// Where the node lives depends on the environment's control plane:
//
//   - Tailscale: the server mints a single-use, ephemeral, pre-authorized,
//     tagged key that expires within minutes and hands it to this caller
//     only, in the start answer; this host joins with it and runs the
//     proxy itself. The durable credential never leaves the servers.
//
//   - headscale: the stored credential is a reusable key, which must never
//     leave the servers, so the node and proxy stay on the server and this
//     host reaches the proxy through an authenticated relay (one upgraded
//     HTTP connection per proxied connection, with a per-run token). The
//     local proxy URL works the same.
//
//     c := &runner.Client{Server: "https://tailgate.example.com", Token: token}
//     r, err := c.Start(ctx, "staging", runner.Options{})
//     // ... point the browser or tool at r.ProxyURL ...
//     rep, err := r.End(ctx)
package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/errcode"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

// Client talks to one tailgate server as one principal.
type Client struct {
	// Server is the tailgate API's base URL, e.g. https://tailgate.example.com.
	Server string
	// Token is a tailgate API token (a runner token is enough).
	Token string
	// HTTPClient defaults to one with a five-minute timeout (a start on
	// the server joins the tailnet and warms every path).
	HTTPClient *http.Client
	// Logger receives warnings (a heartbeat that failed); nil discards.
	Logger *slog.Logger
}

// Options for one run.
type Options struct {
	// Lifetime ends the run after this long at the latest; zero is the
	// server's maximum.
	Lifetime time.Duration
	// OnServer keeps the node and proxy on the server, its proxy on the
	// server's loopback: only useful on the server's own host.
	OnServer bool
}

// Run is an open run.
type Run struct {
	// ID names the run on the server.
	ID  string
	Env string
	// Node is the run's node's hostname on the tailnet.
	Node string
	// Placement is run.PlacementRunner (the node is this host's),
	// run.PlacementRelay (the server's, through the relay) or
	// run.PlacementServer.
	Placement string
	// ProxyURL is the run's proxy, on this host's loopback (the server's,
	// with OnServer).
	ProxyURL string
	// JoinMS and WarmMS are how long joining and warming the paths took.
	JoinMS, WarmMS float64
	// Pooled says the node came from the server's warm pool (it joined
	// and warmed before the run started; JoinMS and WarmMS are 0).
	Pooled bool
	// Lease is how long the run lives without a heartbeat.
	Lease time.Duration

	c     *Client
	node  *tailnet.Node
	proxy *egress.Proxy
	relay *relay
	hb    context.CancelFunc
	hbEnd chan struct{}

	mu        sync.Mutex
	done      chan struct{}
	endedErr  error
	closeOnce sync.Once
}

// Report is what a run did: each request its proxy saw, allowed or
// refused, and how it ended.
type Report struct {
	ID, Env, Node, Placement string
	JoinMS, WarmMS           float64
	EndReason                string
	Events                   []egress.Event
}

// APIError is an error answer of the tailgate server.
type APIError struct {
	Status     int
	Code       errcode.Code
	Message    string
	Step       string
	Fragment   string
	RolledBack []string
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.Step != "" {
		fmt.Fprintf(&b, " [step: %s]", e.Step)
	}
	fmt.Fprintf(&b, " (%d %s)", e.Status, e.Code)
	if len(e.RolledBack) > 0 {
		fmt.Fprintf(&b, "\nrolled back: %s", strings.Join(e.RolledBack, "; "))
	}
	if e.Fragment != "" {
		fmt.Fprintf(&b, "\nThe policy is managed outside Tailscale's admin console; add these entries to it yourself:\n\n%s", e.Fragment)
	}
	return b.String()
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return &http.Client{Timeout: 5 * time.Minute}
}

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Do sends one API call as the client's principal and decodes a 2xx
// answer into out (which may be nil); any other answer is an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	_, err := c.Call(ctx, method, path, body, out)
	return err
}

// Call is Do that also returns the answer's raw JSON (for --json output).
// With no Token it sends no Authorization (public endpoints).
func (c *Client) Call(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Server, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		// The URL error names the server; the request body (which may hold
		// an API token) is not in it.
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		if json.Unmarshal(raw, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
			e := eb.Error
			return nil, &APIError{Status: resp.StatusCode, Code: e.Code, Message: e.Message, Step: e.Step, Fragment: e.Fragment, RolledBack: e.RolledBack}
		}
		return nil, fmt.Errorf("%s %s: server answered %s", method, path, resp.Status)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return raw, nil
}

// Start starts a run of env and returns it ready: its proxy listens and
// the paths to the targets are warm.
func (c *Client) Start(ctx context.Context, env string, opts Options) (*Run, error) {
	req := api.StartRunRequest{Placement: run.PlacementRunner}
	if opts.OnServer {
		req.Placement = run.PlacementServer
	}
	if opts.Lifetime > 0 {
		req.LifetimeSeconds = int64((opts.Lifetime + time.Second - 1) / time.Second)
	}
	var a api.Run
	if err := c.Do(ctx, "POST", "/v1/environments/"+url.PathEscape(env)+"/runs", req, &a); err != nil {
		return nil, fmt.Errorf("start a run of %s: %w", env, err)
	}
	r := &Run{ID: a.ID, Env: a.Env, Node: a.Node, Placement: a.Placement, ProxyURL: a.ProxyURL,
		JoinMS: a.JoinMS, WarmMS: a.WarmMS, Pooled: a.Pooled, Lease: time.Duration(a.LeaseSeconds * float64(time.Second)),
		c: c, done: make(chan struct{})}
	var err error
	switch {
	case a.Join != nil:
		err = r.joinHere(ctx, a)
	case a.Relay != nil:
		err = r.startRelay(a.Relay)
	case a.ProxyURL == "":
		err = errors.New("the server's answer has neither a proxy, a join ticket nor a relay")
	}
	if err != nil {
		r.close()
		c.endOnServer(ctx, r.ID)
		return nil, fmt.Errorf("start a run of %s: %w", env, err)
	}
	r.heartbeat()
	return r, nil
}

// Done is closed when the server has ended the run (its lifetime, or an
// operator); Err then says why.
func (r *Run) Done() <-chan struct{} { return r.done }

// Err is why the server ended the run, once Done is closed.
func (r *Run) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.endedErr
}

// heartbeat keeps the run's lease every third of it until End, and closes
// Done when the server says the run has ended.
func (r *Run) heartbeat() {
	every := max(r.Lease/3, 100*time.Millisecond)
	if r.Lease == 0 {
		every = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.hb, r.hbEnd = cancel, make(chan struct{})
	go func() {
		defer close(r.hbEnd)
		t := time.NewTicker(every)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			hctx, hcancel := context.WithTimeout(ctx, every)
			err := r.c.Do(hctx, "POST", "/v1/runs/"+url.PathEscape(r.ID)+"/heartbeat", nil, nil)
			hcancel()
			var ae *APIError
			switch {
			case err == nil:
				failing = false
			case ctx.Err() != nil:
				return
			case errors.As(err, &ae) && ae.Code == errcode.RunEnded:
				r.mu.Lock()
				r.endedErr = ae
				r.mu.Unlock()
				// The server ended it (its lifetime, say): nothing of it
				// may keep working here.
				r.close()
				close(r.done)
				return
			case !failing:
				failing = true // said once per outage, not every tick
				r.c.logger().Warn("heartbeat failed; retrying", "run", r.ID, "err", err)
			}
		}
	}()
}

// End ends the run: the local proxy closes, this host's node leaves the
// tailnet, the server records the end. It runs to the end even if ctx is
// cancelled (a signal): a run must not outlive its client.
func (r *Run) End(ctx context.Context) (Report, error) {
	if r.hb != nil {
		r.hb()
		<-r.hbEnd
	}
	rep := Report{ID: r.ID, Env: r.Env, Node: r.Node, Placement: r.Placement, JoinMS: r.JoinMS, WarmMS: r.WarmMS}
	if r.proxy != nil {
		rep.Events = r.proxy.Events()
	}
	r.close()
	ended, err := r.c.endOnServer(ctx, r.ID)
	if err == nil {
		rep.EndReason = ended.EndReason
		if r.proxy == nil {
			rep.Events = ended.Events // the server's proxy (relay, OnServer)
		}
	}
	if rep.Events == nil {
		rep.Events = []egress.Event{}
	}
	return rep, err
}

func (c *Client) endOnServer(ctx context.Context, id string) (api.Run, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var a api.Run
	err := c.Do(ctx, "DELETE", "/v1/runs/"+url.PathEscape(id), nil, &a)
	return a, err
}

// close stops what runs on this host, once.
func (r *Run) close() {
	r.closeOnce.Do(func() {
		if r.proxy != nil {
			r.proxy.Close()
		}
		if r.relay != nil {
			r.relay.close()
		}
		if r.node != nil {
			// Logging out removes the ephemeral node from the tailnet at once.
			r.node.Close()
		}
	})
}
