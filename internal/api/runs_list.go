package api

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/store"
)

// RunSummary is one run in GET /v1/runs: what the store keeps of it. An
// open run's network events are in GET /v1/runs/{id}.
type RunSummary struct {
	ID        string     `json:"id"`
	Env       string     `json:"environment"`
	State     string     `json:"state"`
	Node      string     `json:"node,omitempty"`
	StartedAt time.Time  `json:"started_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	EndReason string     `json:"end_reason,omitempty"`
}

// RunList is the answer of GET /v1/runs.
type RunList struct {
	Runs []RunSummary `json:"runs"`
}

// runsPerEnvironment bounds how many runs of each environment the list
// shows (the newest).
const runsPerEnvironment = 50

// listRuns is GET /v1/runs: the org's runs, newest first, at most
// runsPerEnvironment of each environment; ?environment=NAME narrows it to
// one (another org's or a missing one is 404).
func (s *server) listRuns(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	envs, err := s.store.ListEnvironments(r.Context(), p.OrgID)
	if err != nil {
		return err
	}
	if only := r.URL.Query().Get("environment"); only != "" {
		if err := checkEnvName(only); err != nil {
			return err
		}
		envs = slices.DeleteFunc(envs, func(e store.Environment) bool { return e.Name != only })
		if len(envs) == 0 {
			return apiErr(errcode.NotFound, "environment %q not found", only)
		}
	}
	out := RunList{Runs: []RunSummary{}}
	for _, e := range envs {
		runs, err := s.store.ListRuns(r.Context(), p.OrgID, e.ID, runsPerEnvironment)
		if err != nil {
			return err
		}
		for _, rn := range runs {
			rs := RunSummary{ID: rn.ID, Env: e.Name, State: rn.State, Node: rn.NodeHostname, StartedAt: rn.StartedAt, ExpiresAt: rn.ExpiresAt, EndReason: rn.EndReason}
			if !rn.EndedAt.IsZero() {
				t := rn.EndedAt
				rs.EndedAt, rs.State = &t, "ended"
			}
			out.Runs = append(out.Runs, rs)
		}
	}
	slices.SortFunc(out.Runs, func(a, b RunSummary) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}
