package connect

import (
	"context"
	"time"

	"github.com/tailgate-dev/tailgate/internal/periodic"
	"github.com/tailgate-dev/tailgate/internal/store"
)

// Scheduler re-verifies connected environments, so a route that was
// unapproved or a target that went down shows as failing before a run
// needs it.
type Scheduler struct {
	Service *Service
	// List returns every connected environment (store.ConnectedEnvironments).
	List func(context.Context) ([]store.ConnectedEnvironment, error)
	// Every is how long a verification stays fresh.
	Every time.Duration
}

// Run verifies due environments until ctx is done, checking every minute
// (or every Every, if shorter).
func (sc *Scheduler) Run(ctx context.Context) {
	periodic.Do(ctx, min(sc.Every, time.Minute), func() { sc.Once(ctx) })
}

// Once verifies, one after another, every connected environment whose
// connection has not changed (connect or verify) for Every. It returns how
// many it verified.
func (sc *Scheduler) Once(ctx context.Context) int {
	log := sc.Service.logger()
	envs, err := sc.Due(ctx)
	if err != nil {
		log.Error("scheduled verify: list environments", "err", err)
		return 0
	}
	n := 0
	for _, e := range envs {
		if ctx.Err() != nil {
			break
		}
		if err := sc.VerifyOne(ctx, e.OrgID, e.EnvName); err != nil {
			continue
		}
		n++
	}
	return n
}

// Due lists the connected environments whose connection has not changed
// (connect or verify) for Every: those due a verification.
func (sc *Scheduler) Due(ctx context.Context) ([]store.ConnectedEnvironment, error) {
	envs, err := sc.List(ctx)
	if err != nil {
		return nil, err
	}
	var due []store.ConnectedEnvironment
	for _, e := range envs {
		if sc.Service.now().Sub(e.UpdatedAt) >= sc.Every {
			due = append(due, e)
		}
	}
	return due, nil
}

// VerifyOne verifies one environment on the schedule's behalf. A
// verification that ran is recorded, whatever its verdict; the error is
// one that kept it from running.
func (sc *Scheduler) VerifyOne(ctx context.Context, orgID, env string) error {
	if _, err := sc.Service.Verify(ctx, orgID, env); err != nil {
		sc.Service.logger().Warn("scheduled verify failed", "org", orgID, "env", env, "err", err)
		return err
	}
	return nil
}
