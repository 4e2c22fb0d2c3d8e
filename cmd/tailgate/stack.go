package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/tailgate-dev/tailgate/internal/allowlist"
	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/console"
	"github.com/tailgate-dev/tailgate/internal/issuer"
	"github.com/tailgate-dev/tailgate/internal/jobs"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	tgrun "github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

// stackConfig is what the tailgate API needs around it, from serve's flags
// or from the demo's sandbox.
type stackConfig struct {
	Store *store.Store
	// DB is the store's DSN: on PostgreSQL, the background work runs as
	// jobs in River there, shared by every replica (package jobs).
	DB             string
	Vault          *vault.Keyring
	APIBaseURL     string // Tailscale API (or the sandbox's stand-in)
	ControlURL     string // "" is Tailscale's
	Logger         *slog.Logger
	RunMaxLifetime time.Duration // 0: the run manager's default
	RunLease       time.Duration
	// WarmPool is how many joined, warmed nodes to keep per connected
	// environment for runs on this server; 0: runs join when they start.
	WarmPool    int
	VerifyEvery time.Duration // 0: no scheduled verification
	// Outbound is where calls to a tenant's URL (a self-hosted control)
	// may go; nil refuses loopback and private addresses (package outbound).
	Outbound *outbound.Policy
	// PublicURL, when set, makes tailgate an OIDC issuer there: connect
	// creates federated identities (no stored secret) on Tailscale.
	PublicURL string
	// SigningKeyRotation is how often the issuer's signing key rotates;
	// 0 never rotates automatically.
	SigningKeyRotation time.Duration
	// SigningKeyPrepublish is how long a new signing key is published
	// before it signs.
	SigningKeyPrepublish time.Duration
	// Allowlist publishes the Network Allowlist and delivers its
	// webhooks; nil: its endpoints answer 503.
	Allowlist           *allowlist.Service
	AllowlistNeedsToken bool
}

// stack is the whole tailgate API as serve runs it: connect, verify and
// disconnect; runs with their lease sweeper; scheduled verification; and
// the REST handler over them. demo runs the same stack, so everything the
// demo prints works against it.
type stack struct {
	Connect *connect.Service
	Runs    *tgrun.Manager
	Handler http.Handler
	// Metrics serves the stack's Prometheus metrics (metrics.go); serve
	// mounts it on --metrics-listen, never on the API's address.
	Metrics http.Handler
	// Queue is the replica's job queue on PostgreSQL; nil on SQLite,
	// where the background work is this process's timers.
	Queue *jobs.Queue
	// Pool is the warm pool of run nodes (serve --warm-pool); nil without.
	Pool     *tgrun.Pool
	stop     context.CancelFunc
	stopPool func()
}

// poolDrainer empties an environment's share of the warm pool when it is
// disconnected or connected again (a new credential, other targets): its
// nodes leave the tailnet at once. Other replicas notice at their next
// pool check.
type poolDrainer struct {
	api.PrivateNetwork
	pool *tgrun.Pool
}

func (d poolDrainer) Connect(ctx context.Context, req connect.Request) (connect.Result, error) {
	res, err := d.PrivateNetwork.Connect(ctx, req)
	if err == nil {
		d.pool.Drain(req.OrgID, req.Env)
	}
	return res, err
}

func (d poolDrainer) Disconnect(ctx context.Context, orgID, envName, apiToken string) error {
	err := d.PrivateNetwork.Disconnect(ctx, orgID, envName, apiToken)
	// A disconnect that failed part way may have revoked the credential:
	// the pool's nodes go either way.
	d.pool.Drain(orgID, envName)
	return err
}

// startStack builds the services and starts their background work, which
// runs until Close.
func startStack(ctx context.Context, cfg stackConfig) (*stack, error) {
	svc := &connect.Service{Store: cfg.Store, Vault: cfg.Vault, APIBaseURL: cfg.APIBaseURL, ControlURL: cfg.ControlURL, Logger: cfg.Logger, Outbound: cfg.Outbound}
	var iss *issuer.Issuer
	if cfg.PublicURL != "" {
		iss = &issuer.Issuer{URL: cfg.PublicURL, Keys: cfg.Store, Vault: cfg.Vault, Prepublish: cfg.SigningKeyPrepublish}
		svc.Issuer = iss
	}
	met := newServeMetrics()
	runs := &tgrun.Manager{Connect: svc, Store: met.runStore(cfg.Store), Logger: cfg.Logger, MaxLifetime: cfg.RunMaxLifetime, Lease: cfg.RunLease}
	met.countOpenRuns(runs)
	sched := &connect.Scheduler{Service: svc, List: cfg.Store.ConnectedEnvironments, Every: cfg.VerifyEvery}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	// The warm pool is this process's, on every replica: its nodes live
	// here, so its refills are this process's timers, not shared jobs.
	var pool *tgrun.Pool
	stopPool := func() {}
	if cfg.WarmPool > 0 {
		pool = &tgrun.Pool{Size: cfg.WarmPool, Connect: svc, Connections: cfg.Store, Logger: cfg.Logger}
		runs.Pool = pool
		met.countWarmPool(pool)
		stopPool = pool.Start(bg)
	}
	var queue *jobs.Queue
	if store.IsPostgres(cfg.DB) {
		// Several replicas may share the database: the sweeps and the
		// verification schedule are jobs, each done once by one of them;
		// each replica watches its own runs (and says it is alive).
		var err error
		queue, err = jobs.Start(ctx, jobs.Options{DSN: cfg.DB, Replica: runs.ReplicaID(), Runs: runs,
			Verify: sched, VerifyEvery: cfg.VerifyEvery, Logger: cfg.Logger})
		if err != nil {
			stop()
			return nil, err
		}
		go runs.Watch(bg, 2*time.Second)
		met.countQueueDepth(queue)
	} else {
		// One process: the sweeper ends runs past their lifetime or whose
		// client stopped sending heartbeats (killed, say), and runs a
		// previous process left open.
		go runs.Sweep(bg, 5*time.Second)
		if cfg.VerifyEvery > 0 {
			go sched.Run(bg)
		}
	}
	if iss != nil && cfg.SigningKeyRotation > 0 {
		go rotateSigningKeys(bg, iss, cfg.SigningKeyRotation, cfg.Logger)
	}
	if cfg.Allowlist != nil {
		go cfg.Allowlist.RunDeliveries(bg, 5*time.Second)
	}
	h := api.New(api.Options{Store: cfg.Store, PrivateNetwork: met.network(poolDrainer{svc, pool}), Runs: met.runs(runs), RunLease: cfg.RunLease, Logger: cfg.Logger, Issuer: iss,
		Allowlist: cfg.Allowlist, AllowlistNeedsToken: cfg.AllowlistNeedsToken})
	// The web console answers "/" and "/console/..."; it calls the API in
	// process with the signed-in person's token.
	h = console.Wrap(h, console.Options{Logger: cfg.Logger})
	return &stack{Connect: svc, Runs: runs, Pool: pool, Handler: h, Metrics: met.Handler(), Queue: queue, stop: stop, stopPool: stopPool}, nil
}

// rotateSigningKeys rotates the issuer's signing key every `every`,
// checking hourly (and at start) whether the newest key is that old.
func rotateSigningKeys(ctx context.Context, iss *issuer.Issuer, every time.Duration, log *slog.Logger) {
	check := min(time.Hour, every)
	for {
		if rotated, err := iss.RotateIfDue(ctx, every); err != nil {
			log.Error("rotate OIDC signing key", "err", err)
		} else if rotated {
			log.Info("rotated OIDC signing key", "prepublish", iss.Prepublish.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(check):
		}
	}
}

// StopBackground stops the sweeper and the verification schedule (or this
// replica's job worker, letting running jobs finish for a while) and
// empties the warm pool, whose nodes leave the tailnet; open runs stay
// open until Close.
func (s *stack) StopBackground() {
	s.stop()
	s.stopPool()
	if s.Queue != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.Queue.Stop(ctx)
		s.Queue = nil
	}
}

// Close stops the background work and ends every open run: each leaves
// the tailnet rather than wait for the control server to expire its
// ephemeral node.
func (s *stack) Close() {
	s.StopBackground()
	s.Runs.Close()
}
