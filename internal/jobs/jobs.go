// Package jobs runs tailgate's background work as jobs in River
// (github.com/riverqueue/river), a job queue kept in the same PostgreSQL
// database as tailgate's state, so that any number of tailgate serve
// replicas share the work and each piece of it is done once.
//
// # Overview
//
// Each replica runs a [Queue]: a River client with its own connection
// pool. River elects one replica leader; the leader inserts the periodic
// jobs, each unique for its period (UniqueOpts.ByPeriod), so two replicas
// never insert the same period's job twice; any replica works them. A job
// that fails is retried with River's backoff. A replica that dies
// mid-job leaves it running; River rescues it after RescueStuckJobsAfter,
// and meanwhile the next period's job runs elsewhere. Each job also holds
// a PostgreSQL advisory lock for its work while it runs, so a job rescued
// (or a next period's job) never overlaps one still running.
//
//	kind                          every                   does
//	tailgate_sweep_runs           SweepEvery (5 s)        ends runs past their lifetime or whose lease lapsed (run.Manager.SweepExpired)
//	tailgate_sweep_orphans        OrphansEvery (30 s)     ends runs whose holding replica stopped (run.Manager.SweepOrphans)
//	tailgate_verify_due           min(VerifyEvery, 1 min) inserts a verify_environment job per environment due
//	tailgate_verify_environment   (inserted)              verifies one environment, unique per environment and VerifyEvery
//
// What each process must do for itself (record that it is alive, stop
// the nodes of its runs that ended elsewhere) is not a job: every replica
// runs run.Manager.Watch.
//
// River's schema is migrated by [Start] under an advisory lock of its
// own, so replicas starting together apply each River migration once.
//
// # Usage
//
//	q, err := jobs.Start(ctx, jobs.Options{DSN: dsn, Replica: m.ReplicaID(), Runs: m, Verify: sched, VerifyEvery: time.Hour})
//	go m.Watch(ctx, 2*time.Second)
//	defer q.Stop(context.Background())
package jobs

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/errcode"
	"github.com/tailgate-dev/tailgate/internal/store"
)

// Defaults for an Options' zero fields.
const (
	DefaultSweepEvery   = 5 * time.Second
	DefaultOrphansEvery = 30 * time.Second
	// verifyTimeout bounds one verification job: joining and probing
	// every target takes seconds to a minute or two.
	verifyTimeout = 5 * time.Minute
	// poolConns is each replica's River pool, beside the store's.
	poolConns = 8
)

// Runs is the store-wide run sweeping the jobs do (a *run.Manager).
type Runs interface {
	SweepExpired(ctx context.Context) (int, error)
	SweepOrphans(ctx context.Context) (int, error)
}

// Verifier finds the environments due a scheduled verification and
// verifies one (a *connect.Scheduler).
type Verifier interface {
	Due(ctx context.Context) ([]store.ConnectedEnvironment, error)
	VerifyOne(ctx context.Context, orgID, env string) error
}

// Options configure a Queue.
type Options struct {
	// DSN is the PostgreSQL URL of tailgate's store; River's tables live
	// in the same database.
	DSN string
	// Replica names this process among the workers (River's client id).
	Replica string
	// Runs is swept every SweepEvery and OrphansEvery.
	Runs Runs
	// Verify re-verifies environments every VerifyEvery; nil, or a zero
	// VerifyEvery, schedules none.
	Verify      Verifier
	VerifyEvery time.Duration
	// SweepEvery and OrphansEvery default to DefaultSweepEvery and
	// DefaultOrphansEvery.
	SweepEvery, OrphansEvery time.Duration
	Logger                   *slog.Logger
}

// Queue is this replica's River client and the pool it works through.
type Queue struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	log    *slog.Logger
	cancel context.CancelFunc
}

// Job kinds' arguments.
type (
	SweepRunsArgs         struct{}
	SweepOrphansArgs      struct{}
	VerifyDueArgs         struct{}
	VerifyEnvironmentArgs struct {
		OrgID string `json:"org_id"`
		Env   string `json:"env"`
	}
)

func (SweepRunsArgs) Kind() string         { return "tailgate_sweep_runs" }
func (SweepOrphansArgs) Kind() string      { return "tailgate_sweep_orphans" }
func (VerifyDueArgs) Kind() string         { return "tailgate_verify_due" }
func (VerifyEnvironmentArgs) Kind() string { return "tailgate_verify_environment" }

// migrationLock is the advisory lock key that serialises River's
// migrations across replicas: "tg-river" in ASCII (the store's own
// migrations use "tailgate").
const migrationLock int64 = 0x74672d7269766572

// Start migrates River's schema (once, under an advisory lock, however
// many replicas start together) and starts working jobs until Stop.
func Start(ctx context.Context, opts Options) (*Queue, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("jobs: %s: %w", store.RedactDSN(opts.DSN), err)
	}
	cfg.MaxConns = poolConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("jobs: connect %s: %w", store.RedactDSN(opts.DSN), err)
	}
	q := &Queue{pool: pool, log: log}
	if err := q.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	workers := river.NewWorkers()
	sweepEvery := cmpOr(opts.SweepEvery, DefaultSweepEvery)
	orphansEvery := cmpOr(opts.OrphansEvery, DefaultOrphansEvery)
	periodic := []*river.PeriodicJob{
		q.periodic(sweepEvery, SweepRunsArgs{}),
		q.periodic(orphansEvery, SweepOrphansArgs{}),
	}
	river.AddWorker(workers, &sweepWorker[SweepRunsArgs]{q: q, sweep: opts.Runs.SweepExpired})
	river.AddWorker(workers, &sweepWorker[SweepOrphansArgs]{q: q, sweep: opts.Runs.SweepOrphans})
	if opts.Verify != nil && opts.VerifyEvery > 0 {
		periodic = append(periodic, q.periodic(min(opts.VerifyEvery, time.Minute), VerifyDueArgs{}))
		river.AddWorker(workers, &verifyDueWorker{q: q, v: opts.Verify, every: opts.VerifyEvery})
		river.AddWorker(workers, &verifyWorker{q: q, v: opts.Verify})
	}
	q.client, err = river.NewClient(riverpgxv5.New(pool), &river.Config{
		ID:                   opts.Replica,
		Logger:               log.With("component", "river"),
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 4}},
		Workers:              workers,
		PeriodicJobs:         periodic,
		MaxAttempts:          5,
		JobTimeout:           time.Minute,
		RescueStuckJobsAfter: verifyTimeout + 5*time.Minute,
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("jobs: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	q.cancel = cancel
	if err := q.client.Start(runCtx); err != nil {
		cancel()
		pool.Close()
		return nil, fmt.Errorf("jobs: start: %w", err)
	}
	return q, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// migrate brings River's schema up to date under migrationLock, a session
// lock on one connection: if this process dies, the connection closes and
// the lock with it.
func (q *Queue) migrate(ctx context.Context) error {
	conn, err := q.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("jobs: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("jobs: take the migration lock: %w", err)
	}
	defer q.unlock(conn, migrationLock)
	m, err := rivermigrate.New(riverpgxv5.New(q.pool), &rivermigrate.Config{Logger: q.log.With("component", "rivermigrate")})
	if err != nil {
		return fmt.Errorf("jobs: migrate: %w", err)
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("jobs: migrate River's schema: %w", err)
	}
	if len(res.Versions) > 0 {
		q.log.Info("migrated River's schema", "versions", len(res.Versions))
	}
	return nil
}

// unlock releases a session advisory lock; a connection that cannot is
// closed rather than returned to the pool still holding it.
func (q *Queue) unlock(conn *pgxpool.Conn, key int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
		conn.Hijack().Close(ctx)
	}
}

// periodic is a job of args' kind every period, unique within each period.
func (q *Queue) periodic(every time.Duration, args river.JobArgs) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(every), func() (river.JobArgs, *river.InsertOpts) {
		return args, &river.InsertOpts{MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByPeriod: every}}
	}, &river.PeriodicJobOpts{RunOnStart: true})
}

// exclusive runs f holding the advisory lock named key, or skips it (nil)
// when another job holds it: that one is doing this very work.
func (q *Queue) exclusive(ctx context.Context, key string, f func(context.Context) error) error {
	conn, err := q.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	h := fnv.New64a()
	h.Write([]byte("tailgate job " + key))
	k := int64(h.Sum64())
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, k).Scan(&got); err != nil {
		return err
	}
	if !got {
		q.log.Debug("job skipped: the same work is running elsewhere", "work", key)
		return nil
	}
	defer q.unlock(conn, k)
	return f(ctx)
}

// Depth is the number of jobs waiting to be worked (available, scheduled
// or waiting to be retried), across every replica: the queue's backlog.
func (q *Queue) Depth(ctx context.Context) (int, error) {
	var n int
	err := q.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state IN ('available', 'scheduled', 'retryable')`).Scan(&n)
	return n, err
}

// Stop stops fetching jobs and waits for running ones until ctx is done,
// then cancels them; it closes the pool.
func (q *Queue) Stop(ctx context.Context) error {
	err := q.client.Stop(ctx)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = q.client.StopAndCancel(cctx)
		cancel()
	}
	q.cancel()
	q.pool.Close()
	return err
}

// sweepWorker runs one store-wide sweep.
type sweepWorker[T river.JobArgs] struct {
	river.WorkerDefaults[T]
	q     *Queue
	sweep func(context.Context) (int, error)
}

func (w *sweepWorker[T]) Work(ctx context.Context, job *river.Job[T]) error {
	return w.q.exclusive(ctx, job.Kind, func(ctx context.Context) error {
		n, err := w.sweep(ctx)
		if n > 0 {
			w.q.log.Info("swept runs", "job", job.Kind, "ended", n)
		}
		return err
	})
}

// verifyDueWorker inserts one verification job per environment due,
// unique per environment within VerifyEvery.
type verifyDueWorker struct {
	river.WorkerDefaults[VerifyDueArgs]
	q     *Queue
	v     Verifier
	every time.Duration
}

func (w *verifyDueWorker) Work(ctx context.Context, job *river.Job[VerifyDueArgs]) error {
	due, err := w.v.Due(ctx)
	if err != nil || len(due) == 0 {
		return err
	}
	params := make([]river.InsertManyParams, 0, len(due))
	for _, e := range due {
		params = append(params, river.InsertManyParams{
			Args: VerifyEnvironmentArgs{OrgID: e.OrgID, Env: e.EnvName},
			InsertOpts: &river.InsertOpts{MaxAttempts: 3,
				UniqueOpts: river.UniqueOpts{ByArgs: true, ByPeriod: w.every}},
		})
	}
	_, err = river.ClientFromContext[pgx.Tx](ctx).InsertMany(ctx, params)
	return err
}

// verifyWorker verifies one environment.
type verifyWorker struct {
	river.WorkerDefaults[VerifyEnvironmentArgs]
	q *Queue
	v Verifier
}

func (w *verifyWorker) Timeout(*river.Job[VerifyEnvironmentArgs]) time.Duration { return verifyTimeout }

func (w *verifyWorker) Work(ctx context.Context, job *river.Job[VerifyEnvironmentArgs]) error {
	a := job.Args
	err := w.q.exclusive(ctx, "verify "+a.OrgID+"/"+a.Env, func(ctx context.Context) error {
		return w.v.VerifyOne(ctx, a.OrgID, a.Env)
	})
	// An environment deleted or disconnected since is not retried.
	var ce *connect.Error
	if errors.As(err, &ce) && (ce.Code == errcode.NotFound || ce.Code == errcode.NotConnected) {
		return river.JobCancel(err)
	}
	return err
}
