package connect

import (
	"context"
	"encoding/json"

	"github.com/tailgate-dev/tailgate/internal/probe"

	"github.com/tailgate-dev/tailgate/internal/store"
)

// Verify joins the tailnet with a fresh ephemeral node and checks every
// target of the environment. The result is stored and returned; an error
// means verification could not run at all.
func (s *Service) Verify(ctx context.Context, orgID, envName string) (Verification, error) {
	cred, err := s.OpenCredential(ctx, orgID, envName)
	if err != nil {
		return Verification{}, err
	}
	log := s.logger().With("org", orgID, "env", envName)
	node, err := cred.Join(ctx, "verify")
	if err != nil {
		return Verification{}, err
	}
	defer cred.Leave(node, log)

	v := Verification{At: s.now().UTC(), OK: true, Node: node.Hostname(), JoinMS: float64(node.JoinDuration().Microseconds()) / 1000, Targets: []probe.Result{}}
	for _, t := range cred.Conn.Targets {
		r := probe.Check(ctx, node, t)
		v.OK = v.OK && r.OK
		v.Targets = append(v.Targets, r)
	}
	results, _ := json.Marshal(v)
	if _, err := s.Store.AddVerification(ctx, orgID, store.Verification{EnvID: cred.Env.ID, At: v.At, OK: v.OK, Results: results}); err != nil {
		log.Error("store verification", "err", err)
	}
	log.Info("verified", "ok", v.OK, "targets", len(v.Targets), "join_ms", v.JoinMS)
	return v, nil
}
