package runner

import (
	"context"
	"fmt"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/redact"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
	"github.com/tailgate-dev/tailgate/internal/target"
)

// joinHere joins this host to the tailnet with the run's single-use key
// and starts the run's proxy here. The key is used once and dropped.
func (r *Run) joinHere(ctx context.Context, a api.Run) error {
	targets, err := target.ParseList(a.Targets)
	if err != nil {
		return fmt.Errorf("the server's targets: %w", err)
	}
	j := a.Join
	node, err := tailnet.Join(ctx, tailnet.JoinOptions{
		ControlURL: j.ControlURL, AuthKey: j.AuthKey, Hostname: j.Hostname, Tags: j.Tags, AcceptRoutes: true,
	})
	if err != nil {
		return fmt.Errorf("join the tailnet as %s: %s", j.Hostname, redact.Secrets(err.Error(), j.AuthKey))
	}
	r.node = node
	r.Node, r.JoinMS = node.Hostname(), float64(node.JoinDuration().Microseconds())/1000
	l, err := run.StartLocal(ctx, node, targets, r.c.logger().With("run", r.ID))
	if err != nil {
		return err
	}
	r.proxy, r.WarmMS = l.Proxy, l.WarmMS
	r.ProxyURL = "http://" + l.Addr.String()
	return nil
}
