package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Verification is one check of an environment's targets.
type Verification struct {
	ID    int64
	EnvID string
	At    time.Time
	// OK is true when every target passed.
	OK bool
	// Results is the per-target verdicts as JSON (the connect package
	// owns its shape); stored and returned as is.
	Results json.RawMessage
}

// AddVerification records a verification of one of orgID's environments
// and, in the same transaction, moves the environment's connection (if
// any) to verified or failing. A zero At means now.
func (s *Store) AddVerification(ctx context.Context, orgID string, v Verification) (Verification, error) {
	if v.At.IsZero() {
		v.At = s.now()
	}
	v.At = v.At.UTC().Truncate(time.Millisecond)
	results := []byte("null")
	if len(v.Results) > 0 {
		if !json.Valid(v.Results) {
			return Verification{}, errors.New("store: add verification: results are not valid JSON")
		}
		results = v.Results
	}
	state := StateFailing
	if v.OK {
		state = StateVerified
	}
	err := s.tx(ctx, func(tx queries) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO verifications (env_id, org_id, at, ok, results)
			SELECT id, org_id, ?, ?, ? FROM environments WHERE id = ? AND org_id = ?
			RETURNING id`,
			ms(v.At), v.OK, string(results), v.EnvID, orgID).Scan(&v.ID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: environment: %w", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: add verification: %w", err)
		}
		_, err = tx.ExecContext(ctx, `UPDATE connections SET state = ?, updated_at = ? WHERE env_id = ? AND org_id = ?`,
			string(state), ms(s.now()), v.EnvID, orgID)
		return err
	})
	if err != nil {
		return Verification{}, err
	}
	v.Results = results
	return v, nil
}

// LatestVerification returns the most recent verification of one of
// orgID's environments; ErrNotFound if there is none.
func (s *Store) LatestVerification(ctx context.Context, orgID, envID string) (Verification, error) {
	var v Verification
	var at int64
	var results string
	err := s.db.QueryRowContext(ctx, `SELECT id, env_id, at, ok, results FROM verifications
		WHERE env_id = ? AND org_id = ? ORDER BY at DESC, id DESC LIMIT 1`, envID, orgID).Scan(&v.ID, &v.EnvID, &at, &v.OK, &results)
	if errors.Is(err, sql.ErrNoRows) {
		return Verification{}, fmt.Errorf("store: verification: %w", ErrNotFound)
	}
	if err != nil {
		return Verification{}, fmt.Errorf("store: latest verification: %w", err)
	}
	v.At, v.Results = fromMS(at), json.RawMessage(results)
	return v, nil
}

// Run is one browser session's stay on the tailnet.
type Run struct {
	ID    string
	EnvID string
	OrgID string
	// State is free text owned by the run package (e.g. "starting",
	// "ready", "ended").
	State        string
	NodeHostname string
	DeviceID     string
	ProxyAddr    string
	StartedAt    time.Time
	ExpiresAt    time.Time
	EndedAt      time.Time // zero while the run is open
	EndReason    string
	// Placement is where the run's node lives (the run package's words:
	// "server", "runner", "relay"); "server" when empty.
	Placement string
	// Holder is the replica whose process holds the run's node and proxy
	// (see TouchReplica), or "" when no tailgate process does (a node on
	// the runner's host).
	Holder string
	// LeaseUntil is when the run ends unless its client sends a heartbeat
	// (RenewRunLease); zero for a run without a lease.
	LeaseUntil time.Time
	// EnvName is the environment's name, filled in when a run is read.
	EnvName string
}

// CreateRun records a new run of one of orgID's environments. ID and
// StartedAt are filled in if empty.
func (s *Store) CreateRun(ctx context.Context, orgID string, r Run) (Run, error) {
	if r.ID == "" {
		r.ID = newID("run")
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = s.now()
	}
	if r.ExpiresAt.IsZero() {
		return Run{}, errors.New("store: create run: no expiry")
	}
	if r.State == "" {
		r.State = "starting"
	}
	if r.Placement == "" {
		r.Placement = "server"
	}
	r.OrgID = orgID
	r.StartedAt, r.ExpiresAt = r.StartedAt.UTC().Truncate(time.Millisecond), r.ExpiresAt.UTC().Truncate(time.Millisecond)
	if !r.LeaseUntil.IsZero() {
		r.LeaseUntil = r.LeaseUntil.UTC().Truncate(time.Millisecond)
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO runs (id, env_id, org_id, state, node_hostname, device_id, proxy_addr, started_at, expires_at, placement, holder, lease_until)
		SELECT ?, id, org_id, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM environments WHERE id = ? AND org_id = ?`,
		r.ID, r.State, r.NodeHostname, r.DeviceID, r.ProxyAddr, ms(r.StartedAt), ms(r.ExpiresAt), r.Placement, r.Holder, nullMS(r.LeaseUntil), r.EnvID, orgID)
	if isUnique(err) {
		return Run{}, fmt.Errorf("store: run %s exists: %w", r.ID, ErrConflict)
	}
	if err != nil {
		return Run{}, fmt.Errorf("store: create run: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Run{}, fmt.Errorf("store: environment: %w", ErrNotFound)
	}
	return r, nil
}

// UpdateRun sets an open run's state and node details (once its node has
// joined and its proxy listens).
func (s *Store) UpdateRun(ctx context.Context, orgID, runID, state, nodeHostname, deviceID, proxyAddr string) error {
	return execOne(ctx, s.db, "update run", "open run", `UPDATE runs SET state = ?, node_hostname = ?, device_id = ?, proxy_addr = ?
		WHERE id = ? AND org_id = ? AND ended_at IS NULL`, state, nodeHostname, deviceID, proxyAddr, runID, orgID)
}

// EndRun closes a run with a reason ("ended", "timeout", "process died",
// ...). Ending an ended run is ErrNotFound (there is no open run).
func (s *Store) EndRun(ctx context.Context, orgID, runID, reason string) error {
	return execOne(ctx, s.db, "end run", "open run", `UPDATE runs SET state = 'ended', ended_at = ?, end_reason = ?
		WHERE id = ? AND org_id = ? AND ended_at IS NULL`, ms(s.now()), reason, runID, orgID)
}

// GetRun returns one of orgID's runs.
func (s *Store) GetRun(ctx context.Context, orgID, runID string) (Run, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, runColumns+` WHERE id = ? AND org_id = ?`, runID, orgID))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, fmt.Errorf("store: run: %w", ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("store: get run: %w", err)
	}
	return r, nil
}

// ListRuns lists an environment's runs, newest first, at most limit.
func (s *Store) ListRuns(ctx context.Context, orgID, envID string, limit int) ([]Run, error) {
	if limit <= 0 {
		limit = 100
	}
	return s.queryRuns(ctx, runColumns+` WHERE env_id = ? AND org_id = ? ORDER BY started_at DESC, id LIMIT ?`, envID, orgID, limit)
}

// OpenRuns lists every open run of every org. It is for the orphan
// sweeper, which works across orgs; API handlers must use ListRuns.
func (s *Store) OpenRuns(ctx context.Context) ([]Run, error) {
	return s.queryRuns(ctx, runColumns+` WHERE ended_at IS NULL ORDER BY started_at, id`)
}

// RenewRunLease moves an open run's lease deadline to until, whichever
// replica the heartbeat reached. A run without a lease keeps none. An
// ended (or unknown) run is ErrNotFound.
func (s *Store) RenewRunLease(ctx context.Context, orgID, runID string, until time.Time) error {
	return execOne(ctx, s.db, "renew run lease", "open run", `UPDATE runs SET lease_until = CASE WHEN lease_until IS NULL THEN NULL ELSE CAST(? AS BIGINT) END
		WHERE id = ? AND org_id = ? AND ended_at IS NULL`, ms(until), runID, orgID)
}

// DueRuns lists the open runs of every org that are past their maximum
// lifetime or whose lease has lapsed at now, for the sweeper (which works
// across orgs; API handlers must use the org-scoped methods).
func (s *Store) DueRuns(ctx context.Context, now time.Time) ([]Run, error) {
	t := ms(now)
	return s.queryRuns(ctx, runColumns+` WHERE ended_at IS NULL AND (expires_at <= ? OR lease_until <= ?) ORDER BY started_at, id`, t, t)
}

// OrphanedRuns lists the open runs whose node a replica held that has not
// been seen (TouchReplica) since seenSince: it stopped, and the node with
// it. Runs no process holds (Holder "") are never orphans.
func (s *Store) OrphanedRuns(ctx context.Context, seenSince time.Time) ([]Run, error) {
	return s.queryRuns(ctx, runColumns+` WHERE ended_at IS NULL AND holder <> ''
		AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = runs.holder AND r.seen_at >= ?) ORDER BY started_at, id`, ms(seenSince))
}

// RunsHeldBy lists the open runs whose node replica holds.
func (s *Store) RunsHeldBy(ctx context.Context, replica string) ([]Run, error) {
	return s.queryRuns(ctx, runColumns+` WHERE ended_at IS NULL AND holder = ? ORDER BY started_at, id`, replica)
}

// TouchReplica records that replica (a tailgate process) is alive now.
func (s *Store) TouchReplica(ctx context.Context, replica string) error {
	now := ms(s.now())
	_, err := s.db.ExecContext(ctx, `INSERT INTO replicas (id, started_at, seen_at) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at`, replica, now, now)
	if err != nil {
		return fmt.Errorf("store: touch replica: %w", err)
	}
	return nil
}

// ForgetReplicas deletes the replicas not seen since before that hold no
// open run, and returns how many it deleted.
func (s *Store) ForgetReplicas(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM replicas WHERE seen_at < ?
		AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.holder = replicas.id AND runs.ended_at IS NULL)`, ms(before))
	if err != nil {
		return 0, fmt.Errorf("store: forget replicas: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

const runColumns = `SELECT id, env_id, org_id, state, node_hostname, device_id, proxy_addr, started_at, expires_at, ended_at, end_reason,
	placement, holder, lease_until, (SELECT e.name FROM environments e WHERE e.id = runs.env_id AND e.org_id = runs.org_id) FROM runs`

func (s *Store) queryRuns(ctx context.Context, q string, args ...any) ([]Run, error) {
	return queryAll(ctx, s.db, "list runs", scanRun, q, args...)
}

func scanRun(sc scanner) (Run, error) {
	var r Run
	var started, expires int64
	var ended, lease sql.NullInt64
	var env sql.NullString
	if err := sc.Scan(&r.ID, &r.EnvID, &r.OrgID, &r.State, &r.NodeHostname, &r.DeviceID, &r.ProxyAddr,
		&started, &expires, &ended, &r.EndReason, &r.Placement, &r.Holder, &lease, &env); err != nil {
		return Run{}, err
	}
	r.StartedAt, r.ExpiresAt, r.EndedAt, r.LeaseUntil = fromMS(started), fromMS(expires), fromNullMS(ended), fromNullMS(lease)
	r.EnvName = env.String
	return r, nil
}
