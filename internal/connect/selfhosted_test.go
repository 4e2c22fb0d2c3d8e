package connect

import (
	"context"
	"slices"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

// TestNodesJoinTheConnectionsControl: a connection made on headscale
// joins its nodes there, advertising no tags (the key carries them); one
// made on the server's Tailscale joins the server's control, advertising
// the environment's tag.
func TestNodesJoinTheConnectionsControl(t *testing.T) {
	ctx := context.Background()
	s := &Service{ControlURL: "https://controlplane.tailscale.com", Outbound: outbound.AllowLoopback(),
		NewOAuthClient: func(context.Context, string, string) tsapi.ControlPlane { return nil }}
	env := store.Environment{Name: "staging"}
	key := tsapi.AuthKey{Key: "k"}

	hs := store.Connection{Tag: "tag:tailgate-staging", Control: controlplane.Control{Type: controlplane.Headscale, URL: "http://127.0.0.1:8080"}}
	cred, err := s.credential(ctx, env, hs, controlplane.Credential{Kind: controlplane.PreAuthKey, Secret: "hskey-auth-x", Tag: hs.Tag})
	if err != nil {
		t.Fatal(err)
	}
	if o := cred.JoinOptions(key, "run"); o.ControlURL != hs.Control.URL || len(o.Tags) != 0 || !o.AcceptRoutes {
		t.Errorf("headscale join options %+v", o)
	}

	ts := store.Connection{Tag: "tag:tailgate-staging", Control: controlplane.Control{Type: controlplane.Tailscale}}
	if cred, err = s.credential(ctx, env, ts, controlplane.Credential{Kind: controlplane.OAuthClient, Secret: "secret", Tag: ts.Tag}); err != nil {
		t.Fatal(err)
	}
	if o := cred.JoinOptions(key, "run"); o.ControlURL != s.ControlURL || !slices.Equal(o.Tags, []string{"tag:tailgate-staging"}) {
		t.Errorf("tailscale join options %+v", o)
	}
}
