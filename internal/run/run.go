// Package run gives every browser run its own stay on the customer's
// tailnet: an ephemeral node, a warm path to the targets, and a loopback
// proxy that is the run's only way out.
//
// # Overview
//
// [Manager.Start] opens the environment's sealed credential (package
// connect), mints a single-use, ephemeral, pre-authorized auth key, joins a
// node tagged tag:tailgate-<env> with subnet routes accepted, warms the
// path to every target (a disco ping to the peer that serves it, then a TCP
// probe: a freshly joined node's first connection can otherwise stall for
// seconds while peers learn its keys), and starts an [egress.Proxy] on
// 127.0.0.1 that reaches only the environment's targets, resolves only
// through the tailnet and dials only through it. The run is ready only
// then; its Info says how long warming took.
//
// Where the node lives is the run's placement. On the server (the
// default) it is as above. On a runner's host ([PlacementRunner]), Start
// only mints the key: the runner's host joins with the [JoinTicket] in the
// start answer, and runs the proxy itself ([StartLocal], from package
// runner). Where the control's stored key is reusable (headscale) and must
// not leave the servers, a runner's run stays on the server and the runner
// reaches its proxy through an authenticated relay ([PlacementRelay],
// [Manager.RelayAddr]).
//
// With a warm pool ([Manager.Pool], [Pool]; tailgate serve --warm-pool),
// the join and the warming happen before the run is asked for: a run on
// the server takes a node the pool joined and warmed for its environment
// (Info.Pooled; JoinMS and WarmMS are 0) and waits only for its proxy.
// The node is the run's alone and leaves the tailnet when the run ends.
//
// A run ends when its owner ends it ([Manager.End]), when it reaches its
// maximum lifetime, or when its lease lapses: a client that stops sending
// heartbeats (killed with SIGKILL, say) loses its run at the next sweep.
// Ending logs the node out, which removes it from the tailnet.
//
// # Several replicas
//
// The store is the source of truth for every run: its placement, its
// lifetime and its lease deadline are recorded, so any replica of tailgate
// serve on the same database reads, heartbeats and ends any run. A run
// whose node lives on the runner's host (PlacementRunner) belongs to no
// process at all. A run whose node lives in a server process (placement
// server or relay) is recorded with that process's [Manager.Replica] as
// its holder; when another replica ends it, the holder notices at its
// next [Manager.Reconcile] and stops the node. Each replica records that
// it is alive at every Reconcile; runs held by a replica not seen for
// ReplicaTimeout are orphans ([Manager.SweepOrphans]): their nodes were
// ephemeral and died with it.
//
// Sweeping is store-wide ([Manager.SweepExpired], [Manager.SweepOrphans]):
// one process (the embedded default, [Manager.Sweep]) or one replica at a
// time (as jobs, package jobs) does it for all; Reconcile is every
// process's own.
//
// # Usage
//
//	m := &run.Manager{Connect: svc, Store: st}
//	go m.Sweep(ctx, 5*time.Second) // one process; replicas: go m.Watch(ctx, 2*time.Second) and jobs
//	info, err := m.Start(ctx, orgID, "staging", run.Options{})
//	// HTTP_PROXY=info.ProxyURL chromium ...
//	m.End(ctx, orgID, info.ID, "done")
package run

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/errcode"
	"github.com/tailgate-dev/tailgate/internal/periodic"

	"github.com/tailgate-dev/tailgate/internal/target"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

// Defaults for a Manager's zero fields.
const (
	DefaultMaxLifetime = time.Hour
	DefaultLease       = 30 * time.Second
	// DefaultReplicaTimeout: a replica unseen this long has stopped.
	DefaultReplicaTimeout = 30 * time.Second
	warmTimeout           = 10 * time.Second
	// startAllowance is how long a run may take to start (join, warm)
	// before its lease counts: the API bounds a start at 3 minutes.
	startAllowance = 3 * time.Minute
)

// End reasons the manager records.
const (
	ReasonLifetime = "maximum lifetime reached"
	ReasonLease    = "lease expired: no heartbeat from the client"
	ReasonOrphaned = "orphaned: the server that held it stopped"
	ReasonShutdown = "server shutting down"
)

// States a run goes through.
const (
	StateReady = "ready"
	StateEnded = "ended"
)

// Manager starts, tracks and ends runs. Set its fields before use.
type Manager struct {
	// Connect opens environments' credentials (a *connect.Service).
	Connect CredentialOpener
	// Store records runs (a *store.Store).
	Store  Store
	Logger *slog.Logger
	// MaxLifetime caps every run; DefaultMaxLifetime when zero.
	MaxLifetime time.Duration
	// Lease is how long a run lives without a heartbeat; DefaultLease when
	// zero, negative to disable.
	Lease time.Duration
	// Replica names this process among the processes sharing the store:
	// the runs whose node it holds are recorded as its. A random id when
	// empty. Set it before the first run.
	Replica string
	// ReplicaTimeout is how long a replica may go unseen before the runs
	// it held are orphans; DefaultReplicaTimeout when zero. Reconcile must
	// run well within it (every few seconds).
	ReplicaTimeout time.Duration
	// Pool, when set, holds nodes joined and warmed ahead: a run on this
	// server takes one instead of joining (and joins as usual when there
	// is none). The pool runs on its own ([Pool.Run]).
	Pool *Pool

	mu      sync.Mutex
	runs    map[string]*session // the runs whose node this process holds
	replica string
}

// CredentialOpener opens an environment's stored credential, with which a
// run's node joins the tailnet.
type CredentialOpener interface {
	OpenCredential(ctx context.Context, orgID, env string) (connect.Credential, error)
}

// Store is what the manager records of runs.
type Store interface {
	CreateRun(ctx context.Context, orgID string, r store.Run) (store.Run, error)
	UpdateRun(ctx context.Context, orgID, id, state, node, nodeID, proxyAddr string) error
	GetRun(ctx context.Context, orgID, id string) (store.Run, error)
	EndRun(ctx context.Context, orgID, id, reason string) error
	RenewRunLease(ctx context.Context, orgID, id string, until time.Time) error
	DueRuns(ctx context.Context, now time.Time) ([]store.Run, error)
	OrphanedRuns(ctx context.Context, seenSince time.Time) ([]store.Run, error)
	RunsHeldBy(ctx context.Context, replica string) ([]store.Run, error)
	TouchReplica(ctx context.Context, replica string) error
	ForgetReplicas(ctx context.Context, before time.Time) (int, error)
}

// Options for one run.
type Options struct {
	// Lifetime is the run's maximum lifetime, capped by the Manager's.
	Lifetime time.Duration
	// NoLease exempts the run from heartbeats: it lives until ended or
	// past its lifetime. For a run the server itself holds (the demo's).
	NoLease bool
	// Placement asks where the run's node and proxy live: PlacementServer
	// (the default) or PlacementRunner, on the runner's host. A runner run
	// on a control that cannot mint single-use keys (headscale) is placed
	// on the server and reached through a relay (PlacementRelay).
	Placement string
}

// Placements of a run.
const (
	// PlacementServer: the node and proxy live in this server; the proxy
	// listens on its loopback.
	PlacementServer = "server"
	// PlacementRunner: the runner's host joins with a single-use key minted
	// for this run (Info.Join) and runs the proxy itself.
	PlacementRunner = "runner"
	// PlacementRelay: the node and proxy live in this server, and the
	// runner reaches the proxy through an authenticated relay (Info.Relay),
	// because the control's stored credential is reusable and must never
	// leave the servers.
	PlacementRelay = "relay"
)

// JoinTicket is how a runner's host joins the tailnet for one run. It is
// in the start answer only, to the principal that started the run; it is
// never stored or logged.
type JoinTicket struct {
	ControlURL string    `json:"control_url,omitempty"`
	AuthKey    string    `json:"auth_key"`
	Hostname   string    `json:"hostname"`
	Tags       []string  `json:"tags,omitempty"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// LogValue keeps the key out of logs.
func (j JoinTicket) LogValue() slog.Value {
	return slog.GroupValue(slog.String("hostname", j.Hostname), slog.String("auth_key", "[redacted]"))
}

// RelayTicket is how a runner reaches a relayed run's proxy: an upgraded
// connection to Path with the token. Start answer only; only the token's
// hash is kept.
type RelayTicket struct {
	Path  string `json:"path"`
	Token string `json:"token"`
}

// Info describes a run; it holds no secret.
type Info struct {
	ID        string     `json:"id"`
	Env       string     `json:"environment"`
	State     string     `json:"state"`
	ProxyURL  string     `json:"proxy_url,omitempty"`
	ProxyAddr string     `json:"proxy_addr,omitempty"`
	Node      string     `json:"node,omitempty"`
	NodeIP    string     `json:"node_ip,omitempty"`
	StartedAt time.Time  `json:"started_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	EndReason string     `json:"end_reason,omitempty"`
	JoinMS    float64    `json:"join_ms,omitempty"`
	WarmMS    float64    `json:"warm_ms,omitempty"`
	// Pooled says the run's node came from the server's warm pool: it had
	// joined and warmed its paths (Warm) before the run started, so the
	// run waited for neither (JoinMS and WarmMS are 0). It serves this
	// run only.
	Pooled bool           `json:"pooled,omitempty"`
	Warm   []WarmResult   `json:"warm,omitempty"`
	Events []egress.Event `json:"events,omitempty"`
	// Placement is where the node and proxy live (Placement*).
	Placement string `json:"placement"`
	// Targets are the environment's targets, host:port, for a runner that
	// runs the proxy itself.
	Targets []string `json:"targets,omitempty"`
	// Join and Relay are set in the start answer of a runner run only.
	Join  *JoinTicket  `json:"join,omitempty"`
	Relay *RelayTicket `json:"relay,omitempty"`
}

// WarmResult is how warming the path to one target went.
type WarmResult struct {
	Target string  `json:"target"`
	OK     bool    `json:"ok"`
	MS     float64 `json:"ms"`
	Error  string  `json:"error,omitempty"`
}

type session struct {
	info  Info
	orgID string
	node  *tailnet.Node
	proxy *egress.Proxy
	// relayHash is the SHA-256 of a relayed run's relay token.
	relayHash []byte
	once      sync.Once
}

func (m *Manager) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (m *Manager) maxLifetime() time.Duration {
	if m.MaxLifetime > 0 {
		return m.MaxLifetime
	}
	return DefaultMaxLifetime
}

// ReplicaID is the id under which this process holds its runs' nodes:
// Replica, or a random id chosen on first use.
func (m *Manager) ReplicaID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.replica == "" {
		m.replica = m.Replica
		if m.replica == "" {
			b := make([]byte, 8)
			rand.Read(b)
			m.replica = "replica_" + hex.EncodeToString(b)
		}
	}
	return m.replica
}

func (m *Manager) replicaTimeout() time.Duration {
	if m.ReplicaTimeout > 0 {
		return m.ReplicaTimeout
	}
	return DefaultReplicaTimeout
}

func (m *Manager) lease() time.Duration {
	if m.Lease == 0 {
		return DefaultLease
	}
	return m.Lease
}

// Error is a run that could not start or be found, with a stable code.
type Error struct {
	Code    errcode.Code // from the one registry (package errcode)
	Message string
	Err     error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Start starts a run of env. On the server (the default), it returns once
// the run's node has joined, the path to its targets is warm and its proxy
// listens. On a runner, it returns the ticket the runner joins with.
func (m *Manager) Start(ctx context.Context, orgID, env string, opts Options) (Info, error) {
	log := m.logger().With("org", orgID, "env", env)
	switch opts.Placement {
	case "", PlacementServer, PlacementRunner:
	default:
		return Info{}, &Error{Code: errcode.BadInput, Message: fmt.Sprintf("placement %q: want server or runner", opts.Placement)}
	}
	cred, err := m.Connect.OpenCredential(ctx, orgID, env)
	if err != nil {
		return Info{}, err
	}
	lifetime := m.maxLifetime()
	if opts.Lifetime > 0 && opts.Lifetime < lifetime {
		lifetime = opts.Lifetime
	}
	// Where the node will live: a runner run on a control that cannot mint
	// single-use keys stays on the server behind a relay.
	placement := PlacementServer
	if opts.Placement == PlacementRunner {
		placement = PlacementRelay
		if cred.SingleUseKeys() {
			placement = PlacementRunner
		}
	}
	rec := store.Run{EnvID: cred.Env.ID, ExpiresAt: time.Now().Add(lifetime), Placement: placement}
	if placement != PlacementRunner {
		rec.Holder = m.ReplicaID()
	}
	leased := m.lease() > 0 && !opts.NoLease
	if leased {
		// The lease counts once the run is ready; a start that never
		// finishes (its server died) is swept after the allowance.
		rec.LeaseUntil = time.Now().Add(startAllowance + m.lease())
	}
	rec, err = m.Store.CreateRun(ctx, orgID, rec)
	if err != nil {
		return Info{}, &Error{Code: errcode.Internal, Message: "record run: " + err.Error(), Err: err}
	}
	fail := func(e error) (Info, error) {
		m.Store.EndRun(context.WithoutCancel(ctx), orgID, rec.ID, "failed to start: "+e.Error())
		log.Warn("run failed to start", "run", rec.ID, "err", e)
		return Info{}, e
	}
	s := &session{orgID: orgID}
	s.info = Info{ID: rec.ID, Env: env, StartedAt: rec.StartedAt, ExpiresAt: rec.ExpiresAt, Placement: PlacementServer}
	for _, t := range cred.Conn.Targets {
		s.info.Targets = append(s.info.Targets, t.String())
	}
	var join *JoinTicket
	var relay *RelayTicket
	switch placement {
	case PlacementRunner:
		if join, err = m.ticket(ctx, cred, s); err != nil {
			return fail(err)
		}
	default:
		if err := m.startHere(ctx, log, cred, s); err != nil {
			return fail(err)
		}
		if placement == PlacementRelay {
			relay = newRelay(s)
		}
	}
	s.info.State = StateReady
	// A run ended meanwhile (by another replica) is not updated: ended.
	err = m.Store.UpdateRun(ctx, orgID, rec.ID, StateReady, s.info.Node, "", s.info.ProxyAddr)
	if err == nil && leased {
		err = m.Store.RenewRunLease(ctx, orgID, rec.ID, time.Now().Add(m.lease()))
	}
	if err != nil {
		m.stop(s)
		return fail(&Error{Code: errcode.Internal, Message: "record run: " + err.Error(), Err: err})
	}
	// The store alone keeps a run whose node is on the runner's host; this
	// process keeps what it must stop when the run ends.
	if placement != PlacementRunner {
		m.mu.Lock()
		if m.runs == nil {
			m.runs = map[string]*session{}
		}
		m.runs[rec.ID] = s
		m.mu.Unlock()
	}
	log.Info("run ready", "run", rec.ID, "placement", s.info.Placement, "node", s.info.Node, "proxy", s.info.ProxyAddr,
		"join_ms", s.info.JoinMS, "warm_ms", s.info.WarmMS, "pooled", s.info.Pooled)
	info := s.info
	info.Join, info.Relay = join, relay
	return info, nil
}

// ticket mints the single-use key a runner's host joins with for s.
func (m *Manager) ticket(ctx context.Context, cred connect.Credential, s *session) (*JoinTicket, error) {
	key, err := cred.MintKey(ctx, "run")
	if err != nil {
		return nil, err
	}
	o := cred.JoinOptions(key, "run")
	s.info.Placement, s.info.Node = PlacementRunner, o.Hostname
	return &JoinTicket{ControlURL: o.ControlURL, AuthKey: key.Key, Hostname: o.Hostname, Tags: o.Tags, ExpiresAt: key.Expires}, nil
}

// startHere gives s a node in this process, from the warm pool or joined
// now and warmed, and starts its proxy.
func (m *Manager) startHere(ctx context.Context, log *slog.Logger, cred connect.Credential, s *session) error {
	log = log.With("run", s.info.ID)
	var l Local
	if pn := m.Pool.take(cred); pn != nil {
		// Joined and warmed already: the run waits only for its proxy.
		s.node, s.info.Pooled = pn.node, true
		s.info.Node, s.info.NodeIP = pn.node.Hostname(), pn.node.IPv4().String()
		p, err := startProxy(pn.node, cred.Conn.Targets, log)
		if err != nil {
			pn.node.Close()
			return err
		}
		l = p
		l.Warm = pn.warm
	} else {
		node, err := cred.Join(ctx, "run")
		if err != nil {
			return err
		}
		s.node = node
		s.info.Node, s.info.NodeIP, s.info.JoinMS = node.Hostname(), node.IPv4().String(), ms(node.JoinDuration())
		if l, err = StartLocal(ctx, node, cred.Conn.Targets, log); err != nil {
			node.Close()
			return err
		}
	}
	s.info.Warm, s.info.WarmMS = l.Warm, l.WarmMS
	s.proxy = l.Proxy
	s.info.ProxyAddr = l.Addr.String()
	s.info.ProxyURL = "http://" + l.Addr.String()
	return nil
}

// Get returns a run of orgID's, open or ended, as the store records it;
// for a run whose node this process holds, with its proxy's events. A run
// another replica ended is stopped here if this process still held it.
func (m *Manager) Get(ctx context.Context, orgID, id string) (Info, error) {
	r, err := m.Store.GetRun(ctx, orgID, id)
	if errors.Is(err, store.ErrNotFound) {
		return Info{}, &Error{Code: errcode.NotFound, Message: fmt.Sprintf("no run %q", id), Err: err}
	}
	if err != nil {
		return Info{}, &Error{Code: errcode.Internal, Message: err.Error(), Err: err}
	}
	s := m.local(orgID, id)
	if s == nil {
		return recordInfo(r), nil
	}
	if !r.EndedAt.IsZero() {
		m.release(s, r.EndReason)
		info := recordInfo(r)
		info.Events = s.events()
		return info, nil
	}
	info := s.info
	info.Events = s.events()
	return info, nil
}

// recordInfo is a run as the store records it.
func recordInfo(r store.Run) Info {
	info := Info{ID: r.ID, Env: r.EnvName, State: r.State, Node: r.NodeHostname, StartedAt: r.StartedAt, ExpiresAt: r.ExpiresAt,
		EndReason: r.EndReason, Placement: r.Placement}
	if !r.EndedAt.IsZero() {
		t := r.EndedAt
		info.EndedAt, info.State = &t, StateEnded
	}
	return info
}

// local is the session of a run whose node this process holds, or nil.
func (m *Manager) local(orgID, id string) *session {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.runs[id]; s != nil && s.orgID == orgID {
		return s
	}
	return nil
}

// release stops a local run whose record has ended (elsewhere).
func (m *Manager) release(s *session, reason string) {
	m.mu.Lock()
	held := m.runs[s.info.ID] == s
	delete(m.runs, s.info.ID)
	m.mu.Unlock()
	m.stop(s)
	if held {
		m.logger().Info("run ended elsewhere; its node left the tailnet", "run", s.info.ID, "env", s.info.Env, "reason", reason)
	}
}

// Heartbeat extends an open run's lease, on whichever replica it arrives.
func (m *Manager) Heartbeat(ctx context.Context, orgID, id string) (Info, error) {
	err := m.Store.RenewRunLease(ctx, orgID, id, time.Now().Add(m.lease()))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Info{}, &Error{Code: errcode.Internal, Message: err.Error(), Err: err}
	}
	// Renewed, or ended or unknown: Get says which.
	return m.Get(ctx, orgID, id)
}

// End ends an open run: its proxy closes and its node leaves the tailnet
// (at once when this process holds it; at the holder's next Reconcile
// when another replica does; a runner's host logs its own node out).
func (m *Manager) End(ctx context.Context, orgID, id, reason string) (Info, error) {
	m.mu.Lock()
	s := m.runs[id]
	if s != nil && s.orgID == orgID {
		delete(m.runs, id)
	} else {
		s = nil
	}
	m.mu.Unlock()
	if s != nil {
		m.stop(s)
	}
	err := m.Store.EndRun(context.WithoutCancel(ctx), orgID, id, reason)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Ended already (or never was): the record says how.
		info, gerr := m.Get(ctx, orgID, id)
		if s != nil && gerr == nil {
			info.Events = s.events()
		}
		return info, gerr
	case err != nil && s == nil:
		return Info{}, &Error{Code: errcode.Internal, Message: "record run end: " + err.Error(), Err: err}
	case err != nil:
		m.logger().Error("record run end", "run", id, "err", err)
	}
	if s == nil {
		m.logger().Info("run ended", "run", id, "reason", reason)
		return m.Get(ctx, orgID, id)
	}
	m.logger().Info("run ended", "run", id, "env", s.info.Env, "reason", reason)
	info := s.info
	info.Events = s.events()
	now := time.Now().UTC()
	info.State, info.EndedAt, info.EndReason = StateEnded, &now, reason
	return info, nil
}

func (m *Manager) stop(s *session) {
	s.once.Do(func() {
		if s.proxy != nil {
			s.proxy.Close()
		}
		// Logging out removes the ephemeral node from the tailnet at once.
		// A runner's node is the runner's to close.
		if s.node != nil {
			s.node.Close()
		}
	})
}

// events are the proxy's events, when the proxy is this server's.
func (s *session) events() []egress.Event {
	if s.proxy == nil {
		return nil
	}
	return s.proxy.Events()
}

// Sweep is the background work of a tailgate that is alone on its store
// (SQLite): every interval until ctx is done it ends runs past their
// lifetime or lease, ends orphans, and reconciles this process's runs.
// Replicas sharing a store run [Manager.Watch] instead, and the sweeps as
// jobs, once for all.
func (m *Manager) Sweep(ctx context.Context, every time.Duration) {
	repeat(ctx, every, func() {
		m.SweepOnce(ctx)
		m.SweepOrphans(ctx)
	})
}

// Watch reconciles this process's runs with the store every interval
// until ctx is done: each of several replicas runs it.
func (m *Manager) Watch(ctx context.Context, every time.Duration) {
	repeat(ctx, every, func() { m.Reconcile(ctx) })
}

// repeat calls f now and then every interval until ctx is done.
func repeat(ctx context.Context, every time.Duration, f func()) {
	f()
	periodic.Do(ctx, every, f)
}

// SweepOnce ends every run past its lifetime or lease and reconciles this
// process's runs.
func (m *Manager) SweepOnce(ctx context.Context) {
	m.SweepExpired(ctx)
	m.Reconcile(ctx)
}

// SweepExpired ends every open run, of any org and held by any replica,
// that is past its maximum lifetime or whose lease has lapsed, and returns
// how many it ended.
func (m *Manager) SweepExpired(ctx context.Context) (int, error) {
	now := time.Now()
	due, err := m.Store.DueRuns(ctx, now)
	if err != nil {
		m.logger().Error("sweep: list due runs", "err", err)
		return 0, err
	}
	n := 0
	for _, r := range due {
		reason := ReasonLease
		if !now.Before(r.ExpiresAt) {
			reason = ReasonLifetime
		}
		// A heartbeat that lands between the listing and this end loses:
		// its lease had lapsed already.
		if _, err := m.End(ctx, r.OrgID, r.ID, reason); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// SweepOrphans ends runs recorded as open whose node a replica held that
// has not been seen for ReplicaTimeout: it died, and the ephemeral node
// with it. It returns how many it ended.
func (m *Manager) SweepOrphans(ctx context.Context) (int, error) {
	stale := time.Now().Add(-m.replicaTimeout())
	open, err := m.Store.OrphanedRuns(ctx, stale)
	if err != nil {
		m.logger().Error("sweep: list orphaned runs", "err", err)
		return 0, err
	}
	n := 0
	for _, r := range open {
		if err := m.Store.EndRun(ctx, r.OrgID, r.ID, ReasonOrphaned); err != nil && !errors.Is(err, store.ErrNotFound) {
			return n, err
		}
		m.logger().Info("run ended", "run", r.ID, "reason", ReasonOrphaned, "holder", r.Holder)
		n++
	}
	// Replicas long gone are forgotten once they hold nothing.
	if _, err := m.Store.ForgetReplicas(ctx, time.Now().Add(-24*time.Hour)); err != nil {
		return n, err
	}
	return n, nil
}

// Reconcile records that this process is alive and stops the runs it
// holds whose record has ended (another replica ended them, or swept
// them). Every process sharing a store runs it every few seconds.
func (m *Manager) Reconcile(ctx context.Context) error {
	replica := m.ReplicaID()
	if err := m.Store.TouchReplica(ctx, replica); err != nil {
		m.logger().Error("reconcile: record this replica", "err", err)
		return err
	}
	m.mu.Lock()
	held := make([]*session, 0, len(m.runs))
	for _, s := range m.runs {
		held = append(held, s)
	}
	m.mu.Unlock()
	if len(held) == 0 {
		return nil
	}
	// Read after the snapshot: a run in it that is not open now has ended.
	open, err := m.Store.RunsHeldBy(ctx, replica)
	if err != nil {
		m.logger().Error("reconcile: list this replica's runs", "err", err)
		return err
	}
	still := make(map[string]bool, len(open))
	for _, r := range open {
		still[r.ID] = true
	}
	for _, s := range held {
		if !still[s.info.ID] {
			reason := ""
			if r, err := m.Store.GetRun(ctx, s.orgID, s.info.ID); err == nil {
				reason = r.EndReason
			}
			m.release(s, reason)
		}
	}
	return nil
}

// Close ends every open run whose node this process holds. Runs on
// runners' hosts are the store's: they stay open, their leases running,
// for another replica (or this one, restarted) to keep.
func (m *Manager) Close() {
	m.mu.Lock()
	var all []*session
	for id, s := range m.runs {
		all = append(all, s)
		delete(m.runs, id)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(func() {
			m.stop(s)
			m.Store.EndRun(context.Background(), s.orgID, s.info.ID, ReasonShutdown)
		})
	}
	wg.Wait()
}

// Open counts the open runs whose node this process holds, for metrics
// and tests (a run on a runner's host is in the store only).
func (m *Manager) Open() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.runs)
}

// Local is a run's node's proxy on the host the node joined from.
type Local struct {
	Proxy  *egress.Proxy
	Addr   netip.AddrPort
	Warm   []WarmResult
	WarmMS float64
}

// StartLocal warms node's paths to targets and starts the run's proxy in
// front of it, on this host's loopback. The run manager does it for runs
// on the server; package runner for runs on a runner's host.
func StartLocal(ctx context.Context, node *tailnet.Node, targets []target.Target, log *slog.Logger) (Local, error) {
	start := time.Now()
	w := warm(ctx, node, targets)
	warmMS := ms(time.Since(start))
	l, err := startProxy(node, targets, log)
	if err != nil {
		return Local{}, err
	}
	l.Warm, l.WarmMS = w, warmMS
	return l, nil
}

// startProxy starts the run's proxy in front of node, on this host's
// loopback, reaching only targets.
func startProxy(node *tailnet.Node, targets []target.Target, log *slog.Logger) (Local, error) {
	var l Local
	path := tailnetPath{node}
	proxy, err := egress.New(egress.Options{Targets: targets, Resolver: path, Dialer: path, Logger: log})
	if err != nil {
		return Local{}, &Error{Code: errcode.Internal, Message: "start proxy: " + err.Error(), Err: err}
	}
	if l.Addr, err = proxy.Start(); err != nil {
		return Local{}, &Error{Code: errcode.Internal, Message: "start proxy: " + err.Error(), Err: err}
	}
	l.Proxy = proxy
	return l, nil
}

// warm makes the node's first real connection to each target fast: the
// node warms the path to the peer serving the target (tailnet.WarmPath),
// then a TCP probe opens it end to end.
func warm(ctx context.Context, node *tailnet.Node, targets []target.Target) []WarmResult {
	ctx, cancel := context.WithTimeout(ctx, warmTimeout)
	defer cancel()
	res := make([]WarmResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			start := time.Now()
			err := warmOne(ctx, node, t)
			res[i] = WarmResult{Target: t.String(), OK: err == nil, MS: ms(time.Since(start))}
			if err != nil {
				res[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	return res
}

func warmOne(ctx context.Context, node *tailnet.Node, t target.Target) error {
	addrs, err := node.LookupNetIP(ctx, t.Host)
	if err != nil {
		return err
	}
	dst := addrs[0]
	if err := node.WarmPath(ctx, dst); err != nil {
		return err
	}
	c, err := node.DialTCP(ctx, netip.AddrPortFrom(dst, t.Port))
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// tailnetPath adapts a node to the proxy's Resolver and Dialer, translating
// the node's refusals into the proxy's reasons.
type tailnetPath struct{ n *tailnet.Node }

func (p tailnetPath) LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return p.n.LookupNetIP(ctx, host) // its not-found error is egress's
}

func (p tailnetPath) DialContext(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	c, err := p.n.DialTCP(ctx, addr)
	var nr *tailnet.NotRoutedError
	if errors.As(err, &nr) {
		return nil, fmt.Errorf("%w: %v", egress.ErrNotViaTailnet, err)
	}
	return c, err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
