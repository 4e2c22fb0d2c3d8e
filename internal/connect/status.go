package connect

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"time"

	"github.com/tailgate-dev/tailgate/internal/controlplane"

	"github.com/tailgate-dev/tailgate/internal/probe"

	"github.com/tailgate-dev/tailgate/internal/store"
)

// States of an environment's private network, as the API reports them.
const (
	StateDisconnected = "disconnected"
	StateConnected    = "connected"
	StateVerified     = "verified"
	StateFailing      = "failing"
)

// Status is an environment's private network as the admin sees it. It
// never holds a secret.
type Status struct {
	Env      string         `json:"environment"`
	State    string         `json:"state"`
	Tag      string         `json:"tag,omitempty"`
	CIDRs    []netip.Prefix `json:"granted_cidrs"`
	Warnings []string       `json:"warnings"`
	Targets  []string       `json:"targets"`
	// Credential is the kind of credential the connection keeps (see
	// Result.Credential); OAuthClientID its id.
	Credential    controlplane.CredentialKind `json:"credential,omitempty"`
	OAuthClientID string                      `json:"oauth_client_id,omitempty"`
	// Control is the self-hosted control plane the tailnet runs on; absent
	// for the server's own Tailscale.
	Control          *controlplane.Control `json:"control,omitempty"`
	ConnectedAt      *time.Time            `json:"connected_at,omitempty"`
	LastVerification *Verification         `json:"last_verification,omitempty"`
}

// Verification is one verify run: a verdict per target.
type Verification struct {
	At      time.Time      `json:"at"`
	OK      bool           `json:"ok"`
	Node    string         `json:"node"`
	JoinMS  float64        `json:"join_ms"`
	Targets []probe.Result `json:"targets"`
}

// Status reports an environment's private network. An environment that
// was never connected, or was disconnected, is StateDisconnected.
func (s *Service) Status(ctx context.Context, orgID, envName string) (Status, error) {
	env, err := s.Store.GetEnvironment(ctx, orgID, envName)
	if err != nil {
		return Status{}, stepError(StepInput, err)
	}
	st := Status{Env: env.Name, State: StateDisconnected, CIDRs: []netip.Prefix{}, Warnings: []string{}, Targets: []string{}}
	c, err := s.Store.GetConnection(ctx, orgID, env.ID)
	if errors.Is(err, store.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return Status{}, stepError(StepInput, err)
	}
	st.State = string(c.State)
	st.Tag = c.Tag
	st.CIDRs = nonNil(c.CIDRs)
	st.Warnings = nonNil(c.Warnings)
	for _, t := range c.Targets {
		st.Targets = append(st.Targets, t.String())
	}
	st.OAuthClientID, st.Credential = c.OAuthClientID, c.Credential
	if !c.Control.ServersOwn() {
		ctl := c.Control
		st.Control = &ctl
	}
	at := c.CreatedAt
	st.ConnectedAt = &at
	if v, err := s.Store.LatestVerification(ctx, orgID, env.ID); err == nil {
		var ver Verification
		if json.Unmarshal(v.Results, &ver) == nil {
			st.LastVerification = &ver
		}
	}
	return st, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
