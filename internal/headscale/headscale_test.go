package headscale_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/headscale"
	"github.com/tailgate-dev/tailgate/internal/hstest"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// One headscale for the package's tests: starting it is cheap, but the
// router node and relay are per server.
func TestHeadscaleControlPlane(t *testing.T) {
	hs := hstest.Start(t, hstest.Options{})
	admin := hs.Admin()

	t.Run("policy write with a stale version is refused and writes nothing", func(t *testing.T) {
		ctx := ctxT(t)
		p, err := admin.Policy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(p.HuJSON), "the customer's own entries") {
			t.Fatalf("policy lost its comments: %s", p.HuJSON)
		}
		// Someone else writes in between.
		other := strings.Replace(string(p.HuJSON), "own entries", "own entries (edited)", 1)
		if err := admin.SetPolicy(ctx, []byte(other), ""); err != nil {
			t.Fatal(err)
		}
		mine := strings.Replace(string(p.HuJSON), "own entries", "own entries (mine)", 1)
		err = admin.SetPolicy(ctx, []byte(mine), p.ETag)
		if !errors.Is(err, tsapi.ErrPreconditionFailed) {
			t.Fatalf("stale write: got %v, want ErrPreconditionFailed", err)
		}
		now, err := admin.Policy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(now.HuJSON) != other {
			t.Fatalf("stale write changed the policy:\n%s", now.HuJSON)
		}
		// With the current version the write goes through, byte for byte.
		if err := admin.SetPolicy(ctx, []byte(mine), now.ETag); err != nil {
			t.Fatal(err)
		}
		if got, _ := admin.Policy(ctx); string(got.HuJSON) != mine {
			t.Fatalf("policy after write:\n%s", got.HuJSON)
		}
	})

	t.Run("an invalid policy is a PolicyInvalidError and nothing is written", func(t *testing.T) {
		ctx := ctxT(t)
		before, _ := admin.Policy(ctx)
		bad := []byte(`{"grants":[{"src":["tag:nobody-owns-this"],"dst":["*"],"ip":["*"]}]}`)
		var pe *tsapi.PolicyInvalidError
		if err := admin.ValidatePolicy(ctx, bad); !errors.As(err, &pe) {
			t.Fatalf("validate: got %v, want PolicyInvalidError", err)
		}
		if err := admin.SetPolicy(ctx, bad, before.ETag); !errors.As(err, &pe) {
			t.Fatalf("set: got %v, want PolicyInvalidError", err)
		}
		after, _ := admin.Policy(ctx)
		if string(after.HuJSON) != string(before.HuJSON) {
			t.Fatal("an invalid policy changed the stored one")
		}
	})

	t.Run("the stored credential only joins nodes with its tag", func(t *testing.T) {
		ctx := ctxT(t)
		oc, err := admin.CreateOAuthClient(ctx, []string{"auth_keys"}, []string{"tag:router"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(oc.String(), oc.Secret) {
			t.Fatal("credential prints its secret")
		}
		cred := headscale.NewMinting(hs.URL, oc.ID, oc.Secret, []string{"tag:router"})
		key, err := cred.CreateAuthKey(ctx, tsapi.AuthKeyRequest{Ephemeral: true, Tags: []string{"tag:router"}, Expiry: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if key.Key != oc.Secret {
			t.Fatal("minting did not hand back the stored key")
		}
		if _, err := cred.CreateAuthKey(ctx, tsapi.AuthKeyRequest{Ephemeral: true, Tags: []string{"tag:other"}}); !errors.Is(err, tsapi.ErrForbidden) {
			t.Fatalf("other tag: got %v, want ErrForbidden", err)
		}
		if _, err := cred.Devices(ctx); !errors.Is(err, tsapi.ErrForbidden) {
			t.Fatalf("devices with the credential: got %v, want ErrForbidden", err)
		}
		if err := cred.SetPolicy(ctx, []byte("{}"), ""); !errors.Is(err, tsapi.ErrForbidden) {
			t.Fatalf("policy with the credential: got %v, want ErrForbidden", err)
		}

		// Revoked: no node joins with it any more.
		if err := admin.DeleteKey(ctx, oc.ID); err != nil {
			t.Fatal(err)
		}
		jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := tailnet.Join(jctx, tailnet.JoinOptions{ControlURL: hs.URL, AuthKey: oc.Secret, Hostname: "revoked"})
		if err == nil {
			n.Close()
			t.Fatal("a node joined with a revoked credential")
		}
		if strings.Contains(err.Error(), oc.Secret) {
			t.Fatal("join error contains the key")
		}
		if err := admin.DeleteKey(ctx, "999999"); !errors.Is(err, tsapi.ErrNotFound) {
			t.Fatalf("unknown key: got %v, want ErrNotFound", err)
		}
	})

	t.Run("routes are approved through the API, never disabled", func(t *testing.T) {
		ctx := ctxT(t)
		id, err := hs.RouterID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.ApproveRoutes(ctx, id, []netip.Prefix{hstest.RouterSubnet}); err != nil {
			t.Fatal(err)
		}
		if err := admin.ApproveRoutes(ctx, id, []netip.Prefix{hstest.OtherSubnet}); err != nil {
			t.Fatal(err)
		}
		devs, err := admin.Devices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(devs, func(d tsapi.Device) bool { return d.ID == id })
		if i < 0 {
			t.Fatal("router not listed")
		}
		r := devs[i]
		for _, p := range []netip.Prefix{hstest.RouterSubnet, hstest.OtherSubnet} {
			if !slices.Contains(r.AdvertisedRoutes, p) || !slices.Contains(r.EnabledRoutes, p) {
				t.Fatalf("router routes: advertised %v, enabled %v; want %v in both", r.AdvertisedRoutes, r.EnabledRoutes, p)
			}
		}
		if !slices.Contains(r.Tags, "tag:router") || !r.Ephemeral || !slices.Contains(r.Addresses, hstest.RouterIP) {
			t.Fatalf("router: %+v", r)
		}
		if err := admin.ApproveRoutes(ctx, "999999", []netip.Prefix{hstest.RouterSubnet}); err == nil {
			t.Fatal("approving routes of a missing node succeeded")
		}
	})

	t.Run("a wrong API key is ErrUnauthorized and never echoed", func(t *testing.T) {
		ctx := ctxT(t)
		const wrong = "hskey-api-notreal-0123456789abcdef"
		_, err := headscale.New(hs.URL, wrong).Devices(ctx)
		if !errors.Is(err, tsapi.ErrUnauthorized) {
			t.Fatalf("got %v, want ErrUnauthorized", err)
		}
		if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), hs.APIKey) {
			t.Fatalf("error carries a key: %v", err)
		}
	})

	t.Run("tag owners are a headscale user", func(t *testing.T) {
		owners, err := admin.TagOwners(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(owners, []string{hstest.User + "@"}) {
			t.Fatalf("owners %v", owners)
		}
	})
}

func TestCheckURL(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "https://hs.example.com", "https://hs.example.com/"} {
		if err := headscale.CheckURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://hs", "https://user:pw@hs.example.com", "https://hs?x=1", "http://"} {
		err := headscale.CheckURL(u)
		if err == nil {
			t.Errorf("%q accepted", u)
		} else if strings.Contains(err.Error(), "pw@") {
			t.Errorf("%q: error repeats credentials: %v", u, err)
		}
	}
}
