package run

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/periodic"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

// Defaults of a Pool's zero fields.
const (
	// DefaultPoolMaxIdle: a pool node unused this long is replaced, so
	// what a run gets was warmed recently and against the current routes.
	DefaultPoolMaxIdle = 5 * time.Minute
	// DefaultPoolCheck is how often the pool compares itself with the
	// connected environments (another replica's disconnect shows here).
	DefaultPoolCheck = 2 * time.Second
	// DefaultPoolRefillDelay: a replacement for a node a run took starts
	// joining this long after the take, so that the join (CPU, and on a
	// control where runner nodes peer, every peer's reconfiguration) does
	// not land on the run's first requests.
	DefaultPoolRefillDelay = 500 * time.Millisecond
	poolBackoffMin         = time.Second
	poolBackoffMax         = 5 * time.Minute
)

// Pool keeps, for every connected environment, up to Size nodes that
// have joined the tailnet and warmed the path to the environment's
// targets exactly as a run's node does, so that a run started on this
// server takes one instead of joining ([Manager.Pool]).
//
// A pool node serves exactly one run: the run owns it from the moment it
// is taken and logs it out when it ends, like a node it joined itself. It
// is never given back. The pool refills in the background; a join that
// fails is logged and retried with backoff, and a run that finds the pool
// empty joins as it would without one.
//
// A pool node belongs to this process until a run takes it; it has no
// run record. Nodes leave the tailnet (logged out) when their environment
// is disconnected or connected again with another credential or other
// targets ([Pool.Drain], and at the next check when another replica did
// it), when they have been idle for MaxIdle, and when the pool closes. A
// process that dies leaves them to the control's ephemeral-node cleanup,
// exactly like its runs' nodes. Each replica keeps its own pool, for the
// runs it places on itself: a node lives in one process and cannot be
// handed to another.
type Pool struct {
	// Size is how many ready nodes to keep per environment; 0 keeps none.
	Size int
	// Connect opens environments' credentials, to join with.
	Connect CredentialOpener
	// Connections are the connected environments of every org
	// (store.Store.ConnectedEnvironments) and an environment's connection
	// (store.Store.GetConnection).
	Connections PoolStore
	Logger      *slog.Logger
	// MaxIdle is how long a node may wait for a run before it is
	// replaced; DefaultPoolMaxIdle when zero.
	MaxIdle time.Duration
	// Check is how often the pool compares itself with the connected
	// environments and refills; DefaultPoolCheck when zero.
	Check time.Duration
	// RefillDelay is how long after a run takes a node its replacement
	// starts joining; DefaultPoolRefillDelay when zero, negative for none.
	RefillDelay time.Duration

	hits, misses, failures atomic.Int64

	mu     sync.Mutex
	envs   map[string]*envPool // by environment id
	closed bool
	joins  sync.WaitGroup
	// refillNow wakes Run to refill now rather than at its next check.
	refillNow periodic.Waker
}

// PoolStore is what the pool reads of connections.
type PoolStore interface {
	ConnectedEnvironments(ctx context.Context) ([]store.ConnectedEnvironment, error)
	GetConnection(ctx context.Context, orgID, envID string) (store.Connection, error)
}

// envPool is one environment's share of the pool.
type envPool struct {
	orgID, name string
	// gen identifies what the nodes were joined and warmed for: the
	// connection's credential and targets (poolGeneration).
	gen     string
	ready   []*poolNode
	joining bool
	// epoch changes at every drain: a join that began before it closes
	// its node instead of pooling it.
	epoch    int
	failures int
	retryAt  time.Time
	// refillAt is when the next join may start: RefillDelay after the
	// first take since the last join started (a later take does not push
	// it back, so a steady stream of runs cannot starve the refill).
	refillAt time.Time
}

// poolNode is a joined, warmed node waiting for a run.
type poolNode struct {
	node   *tailnet.Node
	gen    string
	warm   []WarmResult
	warmMS float64
	since  time.Time
}

// PoolStats are a pool's counters, for metrics.
type PoolStats struct {
	// Ready is how many nodes wait for a run, all environments together.
	Ready int
	// Hits are runs that took a pool node; Misses runs on this server
	// that found none for their environment and joined.
	Hits, Misses int64
	// JoinFailures are pool joins (or warmings) that failed.
	JoinFailures int64
}

// poolGeneration is what a pool node is good for: a connection's
// credential (connecting again makes a new one), tag and targets. A node
// of another generation is never handed to a run.
func poolGeneration(c store.Connection) string {
	var b strings.Builder
	b.WriteString(string(c.Credential) + "|" + c.OAuthClientID + "|" + c.Tag + "|" + c.Control.URL)
	for _, t := range c.Targets {
		b.WriteString("|" + t.String())
	}
	return b.String()
}

func (p *Pool) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Run keeps the pool filled until ctx is done, then empties it: every
// pool node leaves the tailnet before Run returns.
func (p *Pool) Run(ctx context.Context) {
	defer p.Close()
	if p.Size <= 0 {
		return
	}
	check := p.Check
	if check <= 0 {
		check = DefaultPoolCheck
	}
	periodic.DoNowAndOnWake(ctx, check, &p.refillNow, func() { p.refill(ctx) })
}

// Start runs the pool (Run) in the background until ctx is done or stop
// is called; stop returns once every pool node has left the tailnet.
func (p *Pool) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// poke makes Run refill now rather than at its next check.
func (p *Pool) poke() { p.refillNow.Wake() }

// refill brings the pool in line with the connected environments: it
// drops environments that are gone or changed, replaces idle nodes and
// starts a join for each environment short of Size.
func (p *Pool) refill(ctx context.Context) {
	log := p.logger()
	list, err := p.Connections.ConnectedEnvironments(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("warm pool: list connected environments", "err", err)
		}
		return
	}
	connected := make(map[string]store.ConnectedEnvironment, len(list))
	for _, e := range list {
		connected[e.EnvID] = e
	}
	// Nodes joined for a connection that has changed since (connected
	// again, through any replica) are stale: their credential was revoked
	// or their targets are not the environment's any more.
	p.mu.Lock()
	pooled := map[string]string{}
	for id, e := range p.envs {
		if len(e.ready) > 0 {
			pooled[id] = e.gen
		}
	}
	p.mu.Unlock()
	stale := map[string]string{}
	for id, gen := range pooled {
		ce, ok := connected[id]
		if !ok {
			continue
		}
		c, err := p.Connections.GetConnection(ctx, ce.OrgID, id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && poolGeneration(c) != gen) {
			stale[id] = gen
		}
	}
	maxIdle := p.MaxIdle
	if maxIdle <= 0 {
		maxIdle = DefaultPoolMaxIdle
	}
	now := time.Now()
	var discard []*poolNode
	var fill []string
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if p.envs == nil {
		p.envs = map[string]*envPool{}
	}
	for id, e := range p.envs {
		var out []*poolNode
		reason := ""
		if _, ok := connected[id]; !ok {
			out, reason = e.drain(), "environment disconnected"
			delete(p.envs, id)
		} else if gen, ok := stale[id]; ok && e.gen == gen {
			out, reason = e.drain(), "environment connected again"
		}
		if len(out) > 0 {
			log.Info("warm pool: environment drained", "org", e.orgID, "env", e.name, "nodes", len(out), "reason", reason)
			discard = append(discard, out...)
		}
	}
	for id, ce := range connected {
		e := p.envs[id]
		if e == nil {
			e = &envPool{orgID: ce.OrgID, name: ce.EnvName}
			p.envs[id] = e
		}
		e.name = ce.EnvName
		kept := e.ready[:0]
		for _, n := range e.ready {
			if now.Sub(n.since) > maxIdle {
				discard = append(discard, n)
				continue
			}
			kept = append(kept, n)
		}
		clear(e.ready[len(kept):])
		e.ready = kept
		if !e.joining && len(e.ready) < p.Size && !now.Before(e.retryAt) && !now.Before(e.refillAt) {
			e.joining, e.refillAt = true, time.Time{}
			fill = append(fill, id)
		}
	}
	for _, id := range fill {
		p.joins.Add(1)
		go p.fill(ctx, id)
	}
	p.mu.Unlock()
	leave(discard)
}

// fill joins and warms one node for environment id and adds it to the
// pool, then asks for more if the environment is still short.
func (p *Pool) fill(ctx context.Context, id string) {
	defer p.joins.Done()
	p.mu.Lock()
	e := p.envs[id]
	orgID, name, epoch := e.orgID, e.name, e.epoch
	p.mu.Unlock()
	n, err := p.join(ctx, orgID, id, name)
	p.mu.Lock()
	e.joining = false
	current := !p.closed && p.envs[id] == e && e.epoch == epoch
	switch {
	case err != nil:
		if ctx.Err() != nil || !current {
			break
		}
		p.failures.Add(1)
		e.failures++
		backoff := min(poolBackoffMin<<min(e.failures-1, 20), poolBackoffMax)
		e.retryAt = time.Now().Add(backoff)
		p.logger().Warn("warm pool: join failed; runs join on their own meanwhile", "org", orgID, "env", name,
			"err", err, "retry_in", backoff.String())
	case !current:
		// Drained, disconnected or closed while it joined.
	default:
		if e.gen != n.gen {
			// The connection changed: nodes for the old one go.
			defer leave(e.drain())
			e.gen = n.gen
		}
		e.failures, e.retryAt = 0, time.Time{}
		e.ready = append(e.ready, n)
		short := len(e.ready) < p.Size
		p.mu.Unlock()
		if short {
			p.poke()
		}
		return
	}
	p.mu.Unlock()
	if n != nil {
		n.node.Close()
	}
}

// join joins one node the way a run's starts and warms its paths.
func (p *Pool) join(ctx context.Context, orgID, envID, name string) (*poolNode, error) {
	cred, err := p.Connect.OpenCredential(ctx, orgID, name)
	if err != nil {
		return nil, err
	}
	if cred.Env.ID != envID {
		// The environment was deleted and another made under its name.
		return nil, errors.New("environment changed while the pool refilled")
	}
	node, err := cred.Join(ctx, "run")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	pn := &poolNode{node: node, gen: poolGeneration(cred.Conn), warm: warm(ctx, node, cred.Conn.Targets)}
	pn.warmMS, pn.since = ms(time.Since(start)), time.Now()
	if ctx.Err() != nil {
		node.Close()
		return nil, ctx.Err()
	}
	p.logger().Debug("warm pool: node ready", "org", orgID, "env", name, "node", node.Hostname(),
		"join_ms", ms(node.JoinDuration()), "warm_ms", pn.warmMS)
	return pn, nil
}

// drain takes every ready node out of e (the caller closes them) and
// makes joins under way close theirs.
func (e *envPool) drain() []*poolNode {
	out := e.ready
	e.ready, e.gen = nil, ""
	e.epoch++
	return out
}

// take hands a ready node for cred's connection to one run, or nil when
// there is none (a miss). Nodes joined for another connection of the
// environment are discarded on the way.
func (p *Pool) take(cred connect.Credential) *poolNode {
	if p == nil || p.Size <= 0 {
		return nil
	}
	gen := poolGeneration(cred.Conn)
	var stale []*poolNode
	var got *poolNode
	p.mu.Lock()
	if e := p.envs[cred.Env.ID]; e != nil && !p.closed {
		if e.gen != gen {
			stale = e.drain()
		} else if len(e.ready) > 0 {
			// Oldest first: the others stay fresh longer.
			got = e.ready[0]
			e.ready[0] = nil
			e.ready = e.ready[1:]
			if e.refillAt.IsZero() {
				e.refillAt = time.Now().Add(p.refillDelay())
			}
		}
	}
	p.mu.Unlock()
	leave(stale)
	if got != nil {
		p.hits.Add(1)
		time.AfterFunc(p.refillDelay(), p.poke)
	} else {
		p.misses.Add(1)
		p.poke()
	}
	return got
}

func (p *Pool) refillDelay() time.Duration {
	switch {
	case p.RefillDelay < 0:
		return 0
	case p.RefillDelay == 0:
		return DefaultPoolRefillDelay
	}
	return p.RefillDelay
}

// Drain empties environment envName's share of the pool: its nodes leave
// the tailnet, and a join under way discards its node. Disconnecting or
// connecting the environment again calls it (on another replica, the next
// check notices).
func (p *Pool) Drain(orgID, envName string) {
	if p == nil {
		return
	}
	var out []*poolNode
	p.mu.Lock()
	for _, e := range p.envs {
		if e.orgID == orgID && e.name == envName {
			out = append(out, e.drain()...)
		}
	}
	p.mu.Unlock()
	if len(out) > 0 {
		p.logger().Info("warm pool: environment drained", "org", orgID, "env", envName, "nodes", len(out))
	}
	leave(out)
	p.poke()
}

// Close empties the pool and stops it refilling: every pool node leaves
// the tailnet, including those joining now, before it returns.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	var out []*poolNode
	p.mu.Lock()
	p.closed = true
	for _, e := range p.envs {
		out = append(out, e.drain()...)
	}
	p.mu.Unlock()
	leave(out)
	p.joins.Wait()
}

// Ready is how many nodes wait for a run of orgID's environment envName.
func (p *Pool) Ready(orgID, envName string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, e := range p.envs {
		if e.orgID == orgID && e.name == envName {
			n += len(e.ready)
		}
	}
	return n
}

// Stats are the pool's counters.
func (p *Pool) Stats() PoolStats {
	s := PoolStats{Hits: p.hits.Load(), Misses: p.misses.Load(), JoinFailures: p.failures.Load()}
	p.mu.Lock()
	for _, e := range p.envs {
		s.Ready += len(e.ready)
	}
	p.mu.Unlock()
	return s
}

// leave logs nodes out, together.
func leave(nodes []*poolNode) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { n.node.Close() })
	}
	wg.Wait()
}
