package connect_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/errcode"
	"github.com/tailgate-dev/tailgate/internal/issuer"
	"github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
	"github.com/tailgate-dev/tailgate/internal/tsapi/fake"
)

// federatedIdentity is the fake's record of the identity connect made.
func federatedIdentity(t *testing.T, f *fake.Server, id string) fake.KeyInfo {
	t.Helper()
	for _, k := range f.Keys() {
		if k.ID == id && k.Type == fake.KeyTypeFederated {
			return k
		}
	}
	t.Fatalf("the stand-in has no federated identity %s", id)
	return fake.KeyInfo{}
}

// TestFederatedConnectStoresNoSecretAndVerifies: with an issuer, connect
// creates a federated identity (issuer, subject tailgate:<org>:<env>,
// scope auth_keys, the environment's tag), no OAuth client, and stores
// nothing secret: no database byte holds a client secret or a sealed
// credential. Verify exchanges a fresh ID token and reaches the targets.
func TestFederatedConnectStoresNoSecretAndVerifies(t *testing.T) {
	sb := sandboxtest.Shared(t)
	h := newHarness(t, sb)
	iss := h.FederateOnLoopback(t)
	h.env(t, "fed")
	ctx := ctxT(t)
	token := sb.NewAPIToken()
	res, err := h.svc.Connect(ctx, connect.Request{OrgID: h.org, Env: "fed", APIToken: token, Targets: []string{sandbox.DemoAppName + ":80"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.svc.Disconnect(context.Background(), h.org, "fed", token) })
	if res.Credential != controlplane.FederatedIdentity {
		t.Fatalf("connect kept %q, want a federated identity", res.Credential)
	}
	fi := federatedIdentity(t, sb.API(), res.OAuthClientID)
	if fi.Issuer != iss.URL || fi.Subject != connect.Subject(h.org, "fed") || fi.Subject != "tailgate:"+h.org+":fed" ||
		len(fi.Scopes) != 1 || fi.Scopes[0] != "auth_keys" || len(fi.Tags) != 1 || fi.Tags[0] != "tag:tailgate-fed" || fi.Audience == "" {
		t.Errorf("federated identity %+v", fi)
	}
	if c := liveClients(sb.API(), "tag:tailgate-fed"); len(c) != 0 {
		t.Errorf("connect also made OAuth clients: %+v", c)
	}
	if s := h.Secrets(); len(s) != 0 {
		t.Errorf("the control handed out %d OAuth client secrets", len(s))
	}
	conn, err := h.st.GetConnection(ctx, h.org, mustEnvID(t, h, "fed"))
	if err != nil {
		t.Fatal(err)
	}
	if conn.Secret.KeyID != "" || len(conn.Secret.Ciphertext) != 0 || conn.Audience != fi.Audience {
		t.Errorf("stored connection keeps a sealed secret (%q, %d bytes) or the wrong audience %q", conn.Secret.KeyID, len(conn.Secret.Ciphertext), conn.Audience)
	}
	st, err := h.svc.Status(ctx, h.org, "fed")
	if err != nil || st.Credential != controlplane.FederatedIdentity || st.OAuthClientID != fi.ID {
		t.Errorf("status %+v, %v", st, err)
	}

	v, err := h.svc.Verify(ctx, h.org, "fed")
	if err != nil || !v.OK {
		t.Fatalf("verify with the federated identity: %+v, %v", v, err)
	}
	// Nothing a customer would rotate is in the database: no client
	// secret (there is none), no auth key, no API token of the control.
	files, _ := filepath.Glob(h.dbPath + "*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("tskey-")) {
			t.Errorf("%s holds a Tailscale credential", filepath.Base(f))
		}
	}
}

// runManager is a run manager on the harness's services, closed when the
// test ends.
func (h *harness) runManager(t *testing.T) *run.Manager {
	m := &run.Manager{Connect: h.svc, Store: h.st, Logger: h.Logger()}
	t.Cleanup(m.Close)
	return m
}

// runOnce starts a run of env and ends it; a start that fails fails the
// test, as what.
func (h *harness) runOnce(t *testing.T, m *run.Manager, env, what string) {
	t.Helper()
	ctx := ctxT(t)
	info, err := m.Start(ctx, h.org, env, run.Options{})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	m.End(ctx, h.org, info.ID, "test done")
}

// TestFederatedRunFailsLoudlyWhenTheIdentityIsRevoked: the customer
// deletes the identity in the admin console; the next run (and verify)
// fails with credential_revoked, the stand-in's reason and what to do.
func TestFederatedRunFailsLoudlyWhenTheIdentityIsRevoked(t *testing.T) {
	sb := sandboxtest.Shared(t)
	h := newHarness(t, sb)
	h.FederateOnLoopback(t)
	res := h.ConnectEnv(t, "revoked", sandbox.DemoAppName+":80")
	ctx := ctxT(t)
	m := h.runManager(t)
	h.runOnce(t, m, "revoked", "run before revocation")

	if err := tsapi.NewWithAPIToken(sb.APIURL(), sb.NewAPIToken()).DeleteKey(ctx, res.OAuthClientID); err != nil {
		t.Fatal(err)
	}
	_, err := m.Start(ctx, h.org, "revoked", run.Options{})
	var e *connect.Error
	if !errors.As(err, &e) || e.Code != errcode.CredentialRevoked ||
		!strings.Contains(e.Message, "not found") || !strings.Contains(e.Message, "connect the environment again") {
		t.Fatalf("run after revocation: %v", err)
	}
	if _, err := h.svc.Verify(ctx, h.org, "revoked"); !errors.As(err, &e) || e.Code != errcode.CredentialRevoked {
		t.Errorf("verify after revocation: %v", err)
	}
}

// TestFederatedKeyRotationKeepsRunsWorking: after a rotation the new key
// signs; the stand-in, which cached the old key set, finds the new key id
// by fetching the set again; a token the old key signed still verifies
// while the old key overlaps.
func TestFederatedKeyRotationKeepsRunsWorking(t *testing.T) {
	sb := sandboxtest.Shared(t)
	h := newHarness(t, sb)
	iss := h.FederateOnLoopback(t)
	h.ConnectEnv(t, "rotate", sandbox.DemoAppName+":80")
	ctx := ctxT(t)
	cred, err := h.svc.OpenCredential(ctx, h.org, "rotate")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cred.MintKey(ctx, "before rotation"); err != nil {
		t.Fatalf("mint before rotation: %v", err)
	}
	before := sb.API().IssuerFetches(iss.URL)
	old, err := iss.KeySet(ctx)
	if err != nil || len(old.Keys) != 1 {
		t.Fatalf("key set before rotation: %d keys, %v", len(old.Keys), err)
	}
	oldToken, err := iss.Sign(ctx, connect.Subject(h.org, "rotate"), cred.Conn.Audience, time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	kid, err := iss.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	set, err := iss.KeySet(ctx)
	if err != nil || len(set.Keys) != 2 || len(set.Key(kid)) != 1 || len(set.Key(old.Keys[0].KeyID)) != 1 {
		t.Fatalf("key set after rotation lacks the new or the old key: %d keys, %v", len(set.Keys), err)
	}
	h.runOnce(t, h.runManager(t), "rotate", "run after rotation")
	if after := sb.API().IssuerFetches(iss.URL); after <= before {
		t.Errorf("the stand-in did not fetch the key set again for the new key id (%d fetches before, %d after)", before, after)
	}
	// The old key still verifies during the overlap.
	fed := tsapi.NewWithFederation(sb.APIURL(), cred.Conn.OAuthClientID, func(context.Context) (string, error) { return oldToken, nil })
	if _, err := fed.CreateAuthKey(ctx, tsapi.AuthKeyRequest{Ephemeral: true, Preauthorized: true, Tags: []string{"tag:tailgate-rotate"}, Expiry: time.Minute}); err != nil {
		t.Errorf("a token of the replaced key during the overlap: %v", err)
	}
}

// badIssuer signs what a broken or hostile issuer would.
type badIssuer struct {
	*issuer.Issuer
	subject, audience string
	ttl               time.Duration
}

func (b badIssuer) Sign(ctx context.Context, subject, audience string, ttl time.Duration) (string, error) {
	if b.subject != "" {
		subject = b.subject
	}
	if b.audience != "" {
		audience = b.audience
	}
	if b.ttl != 0 {
		ttl = b.ttl
	}
	return b.Issuer.Sign(ctx, subject, audience, ttl)
}

// TestFederatedTokensTheStandInRefuses: an expired token, one for another
// audience and one for another subject are each refused by the stand-in
// with its reason, and the run fails loudly with it.
func TestFederatedTokensTheStandInRefuses(t *testing.T) {
	sb := sandboxtest.Shared(t)
	h := newHarness(t, sb)
	iss := h.FederateOnLoopback(t)
	h.ConnectEnv(t, "refused", sandbox.DemoAppName+":80")
	ctx := ctxT(t)
	m := h.runManager(t)
	for _, c := range []struct {
		name string
		bad  badIssuer
		want string
	}{
		{"expired", badIssuer{ttl: -time.Minute}, "ID token expired at"},
		{"wrong audience", badIssuer{audience: "api.tailscale.com/someone-else"}, `does not include the federated identity's audience`},
		{"wrong subject", badIssuer{subject: connect.Subject(h.org, "other-env")}, `subject "tailgate:` + h.org + `:other-env" does not match`},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.bad.Issuer = iss
			h.svc.Issuer = c.bad
			defer func() { h.svc.Issuer = iss }()
			_, err := m.Start(ctx, h.org, "refused", run.Options{})
			var e *connect.Error
			if !errors.As(err, &e) || e.Code != errcode.CredentialRevoked || !strings.Contains(e.Message, c.want) {
				t.Fatalf("run with a bad ID token: %v; want credential_revoked with %q", err, c.want)
			}
			t.Log(e.Message)
		})
	}
	// And with the right tokens again, runs work.
	info, err := m.Start(ctx, h.org, "refused", run.Options{})
	if err != nil {
		t.Fatalf("run with good tokens: %v", err)
	}
	m.End(ctx, h.org, info.ID, "test done")
}

// TestConnectWithoutAnIssuerKeepsAnOAuthClient: no public URL, no
// federation; connect says so.
func TestConnectWithoutAnIssuerKeepsAnOAuthClient(t *testing.T) {
	sb := sandboxtest.Shared(t)
	h := newHarness(t, sb)
	res := h.ConnectEnv(t, "classic", sandbox.DemoAppName+":80")
	if res.Credential != controlplane.OAuthClient || len(h.Secrets()) != 1 {
		t.Errorf("connect without an issuer kept %q (%d secrets)", res.Credential, len(h.Secrets()))
	}
}

func mustEnvID(t *testing.T, h *harness, name string) string {
	t.Helper()
	e, err := h.st.GetEnvironment(context.Background(), h.org, name)
	if err != nil {
		t.Fatal(err)
	}
	return e.ID
}
