package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/store"
)

// Runs starts, reads, keeps alive and ends runs for the API: each run is
// an ephemeral node on the environment's tailnet behind a loopback proxy.
// *run.Manager implements it; tests use a fake.
type Runs interface {
	Start(ctx context.Context, orgID, env string, opts run.Options) (run.Info, error)
	Get(ctx context.Context, orgID, id string) (run.Info, error)
	Heartbeat(ctx context.Context, orgID, id string) (run.Info, error)
	End(ctx context.Context, orgID, id, reason string) (run.Info, error)
	RelayAddr(ctx context.Context, orgID, id, token string) (string, error)
}

var _ Runs = (*run.Manager)(nil)

// StartRunRequest is the optional body of POST /v1/environments/{env}/runs.
type StartRunRequest struct {
	// LifetimeSeconds asks for a shorter run than the server's maximum
	// lifetime; zero or absent means the maximum.
	LifetimeSeconds int64 `json:"lifetime_seconds,omitempty"`
	// Placement is where the run's node and proxy live: "server" (the
	// default: the proxy listens on the server's loopback) or "runner"
	// (the caller's host joins the tailnet with a single-use key in the
	// answer's join; on a control that cannot mint one, the run stays on
	// the server and the answer's relay reaches its proxy).
	Placement string `json:"placement,omitempty"`
}

// Run is a run as the API shows it: the run manager's view plus the lease
// its client must heartbeat within.
type Run struct {
	run.Info
	// LeaseSeconds is how long the run lives without a heartbeat; clients
	// send one every third of it.
	LeaseSeconds float64 `json:"lease_seconds,omitempty"`
}

// maxLifetimeSeconds bounds lifetime_seconds before it becomes a
// time.Duration (the server caps it again at its own maximum lifetime).
const maxLifetimeSeconds = 7 * 24 * 3600

// EndReasonClient is the end reason of a run its client ended.
const EndReasonClient = "ended by the client"

// endReasonExpired is what a run past its lifetime is ended with when a
// request finds it before the sweeper does (the sweeper says the same).
const endReasonExpired = run.ReasonLifetime

// runID is the shape of a run id (store ids: prefix, underscore, base32).
var runID = regexp.MustCompile(`^run_[a-z2-7]{1,64}$`)

func (s *server) runsAvailable() error {
	if s.runs == nil {
		return apiErr(errcode.RunsUnavailable, "this server does not start runs (it was started without a run manager)")
	}
	return nil
}

// startRun is POST /v1/environments/{env}/runs. It answers once the run's
// node has joined, its path to the targets is warm and its proxy listens.
func (s *server) startRun(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	if err := s.runsAvailable(); err != nil {
		return err
	}
	name, err := envName(r)
	if err != nil {
		return err
	}
	var req StartRunRequest
	// The body is optional: "POST .../runs" with nothing starts a run of
	// the maximum lifetime.
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &req); err != nil {
			return err
		}
	}
	if req.LifetimeSeconds < 0 || req.LifetimeSeconds > maxLifetimeSeconds {
		return apiErr(errcode.BadInput, "lifetime_seconds must be between 1 and %d (or absent for the server's maximum lifetime)", maxLifetimeSeconds)
	}
	// Joining the tailnet must not stop halfway because the client hung
	// up: a half-joined node is worse than a run nobody heartbeats, which
	// the sweeper ends when its lease lapses.
	ctx, cancel := s.operationContext(r)
	defer cancel()
	if req.Placement != "" && req.Placement != run.PlacementServer && req.Placement != run.PlacementRunner {
		return apiErr(errcode.BadInput, "placement must be server or runner")
	}
	info, err := s.runs.Start(ctx, p.OrgID, name, run.Options{Lifetime: time.Duration(req.LifetimeSeconds) * time.Second, Placement: req.Placement})
	if err != nil {
		return runError(err, name, "")
	}
	w.Header().Set("Location", "/v1/runs/"+info.ID)
	writeJSON(w, http.StatusCreated, s.runAnswer(info))
	return nil
}

// getRun is GET /v1/runs/{id}: an open run with the proxy's events so far,
// or an ended one with how it ended.
func (s *server) getRun(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	info, err := s.lookupRun(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.runAnswer(info))
	return nil
}

// heartbeatRun is POST /v1/runs/{id}/heartbeat: it extends the run's
// lease. A run that has ended is a 409 that says why, so the client stops.
func (s *server) heartbeatRun(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	info, err := s.lookupRun(r, p)
	if err != nil {
		return err
	}
	if info.State != run.StateEnded {
		info, err = s.runs.Heartbeat(r.Context(), p.OrgID, info.ID)
		if err != nil {
			return runError(err, "", info.ID)
		}
	}
	if info.State == run.StateEnded {
		reason := info.EndReason
		if reason == "" {
			reason = "no reason recorded"
		}
		return apiErr(errcode.RunEnded, "run %s has ended (%s); start a new run", info.ID, reason)
	}
	writeJSON(w, http.StatusOK, s.runAnswer(info))
	return nil
}

// endRun is DELETE /v1/runs/{id}: the proxy closes, the node leaves the
// tailnet, and the answer carries the run's per-request diagnostics.
// Ending an ended run answers its ended state again.
func (s *server) endRun(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	if err := s.runsAvailable(); err != nil {
		return err
	}
	id, err := runIDParam(r)
	if err != nil {
		return err
	}
	// Leaving the tailnet must finish even if the client hangs up.
	ctx, cancel := s.operationContext(r)
	defer cancel()
	info, err := s.runs.End(ctx, p.OrgID, id, EndReasonClient)
	if err != nil {
		return runError(err, "", id)
	}
	writeJSON(w, http.StatusOK, s.runAnswer(info))
	return nil
}

func (s *server) runAnswer(info run.Info) Run {
	out := Run{Info: info}
	if info.State != run.StateEnded && s.runLease > 0 {
		out.LeaseSeconds = s.runLease.Seconds()
	}
	return out
}

// lookupRun finds the {id} run of the caller's org. A run found open past
// its lifetime is ended here rather than shown as ready until the next
// sweep.
func (s *server) lookupRun(r *http.Request, p store.Principal) (run.Info, error) {
	if err := s.runsAvailable(); err != nil {
		return run.Info{}, err
	}
	id, err := runIDParam(r)
	if err != nil {
		return run.Info{}, err
	}
	info, err := s.runs.Get(r.Context(), p.OrgID, id)
	if err != nil {
		return run.Info{}, runError(err, "", id)
	}
	if info.State != run.StateEnded && !info.ExpiresAt.IsZero() && time.Now().After(info.ExpiresAt) {
		ctx, cancel := s.operationContext(r)
		defer cancel()
		if info, err = s.runs.End(ctx, p.OrgID, id, endReasonExpired); err != nil {
			return run.Info{}, runError(err, "", id)
		}
	}
	return info, nil
}

// runIDParam reads the {id} path segment. An id that cannot be a run's is
// simply not found (and not echoed: it could be anything).
func runIDParam(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !runID.MatchString(id) {
		return "", apiErr(errcode.NotFound, "run not found: run ids look like run_abcdefghijklmnop")
	}
	return id, nil
}

// runError words the run manager's and connect's errors for the answer.
// env is set when starting, id otherwise.
func runError(err error, env, id string) error {
	var re *run.Error
	if errors.As(err, &re) {
		e := &Error{Message: re.Message, cause: err}
		switch re.Code {
		case errcode.NotFound:
			e.Code, e.Message = errcode.NotFound, fmt.Sprintf("run %s not found", id)
		default:
			e.Code = errcode.Internal
			e.Message = "the run could not start; the server log has the details"
		}
		return e
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		switch ce.Code {
		case errcode.NotFound:
			return notFound(err, env)
		case errcode.JoinFailed:
			return &Error{Code: errcode.JoinFailed, Message: ce.Message, Step: string(ce.Step), cause: err}
		case errcode.NotConnected:
			return &Error{Code: errcode.NotConnected, Message: fmt.Sprintf("environment %q has no private network connected, so a run has no tailnet to join; an admin connects it first (tailgate env connect %s --target HOST:PORT)", env, env), cause: err}
		case errcode.CredentialRevoked:
			return &Error{Code: errcode.CredentialRevoked, Message: ce.Message, Step: string(ce.Step), cause: err}
		}
	}
	return err
}
