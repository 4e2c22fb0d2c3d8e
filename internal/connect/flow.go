package connect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tailgate-dev/tailgate/internal/grants"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

// maxPolicyAttempts bounds the read–edit–write loop: each 412 means
// someone else wrote the policy in between, and we start again from theirs.
const maxPolicyAttempts = 25

// Connect writes the environment's grants, mints its credential and stores
// it sealed. Connecting again replaces the grants and the credential.
func (s *Service) Connect(ctx context.Context, req Request) (_ Result, err error) {
	defer rewordFor(req.Control, &err)
	log := s.logger().With("org", req.OrgID, "env", req.Env)
	if err := checkToken(req.Control, req.APIToken); err != nil {
		return Result{}, err
	}
	targets, err := grants.ParseTargets(req.Targets)
	if err != nil {
		return Result{}, stepError(StepInput, err)
	}
	env, err := s.Store.GetEnvironment(ctx, req.OrgID, req.Env)
	if err != nil {
		return Result{}, stepError(StepInput, err)
	}
	var old *store.Connection
	if c, err := s.Store.GetConnection(ctx, req.OrgID, env.ID); err == nil {
		old = &c
	} else if !errors.Is(err, store.ErrNotFound) {
		return Result{}, stepError(StepInput, err)
	}

	cp := s.adminClient(req.Control, req.APIToken)
	settings, err := cp.Settings(ctx)
	if err != nil {
		return Result{}, stepError(StepSettings, err)
	}
	if settings.TailnetLock {
		return Result{}, &Error{Step: StepSettings, Code: "tailnet_lock",
			Message: "Tailnet Lock is enabled: auth keys minted by an OAuth client need signing, so tailgate's nodes could not join; sign tailgate's keys or disable Tailnet Lock"}
	}
	devices, err := cp.Devices(ctx)
	if err != nil {
		return Result{}, stepError(StepDevices, err)
	}
	plan, err := grants.NewPlan(env.Name, targets, tailnetView(devices))
	if err != nil {
		return Result{}, stepError(StepPlan, err)
	}
	if err := planTagOwners(ctx, cp, &plan); err != nil {
		return Result{}, stepError(StepPlan, err)
	}

	written, err := s.editPolicy(ctx, cp, settings, func(p []byte) ([]byte, error) { return grants.Apply(p, plan) })
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == "policy_managed_externally" {
			e.Fragment = grants.Fragment(plan)
			e.Message = "the policy file is managed from Git (aclsExternallyManagedOn), so tailgate does not write it; add the fragment to your policy, let it deploy, then connect again"
		}
		return Result{}, err
	}
	var undo []func() string
	rollback := func(e *Error) *Error {
		for i := len(undo) - 1; i >= 0; i-- {
			if what := undo[i](); what != "" {
				e.RolledBack = append(e.RolledBack, what)
			}
		}
		log.Warn("connect failed", "step", e.Step, "code", e.Code, "rolled_back", e.RolledBack)
		return e
	}
	if written {
		undo = append(undo, func() string {
			// Put back what the policy had for this environment: nothing,
			// or the previous connection's grants.
			restore := func(p []byte) ([]byte, error) {
				p, err := grants.Remove(p, env.Name)
				if err != nil || old == nil {
					return p, err
				}
				var prev grants.Plan
				if json.Unmarshal(old.Detail, &prev) != nil || prev.Tag == "" {
					return p, nil
				}
				return grants.Apply(p, prev)
			}
			if _, err := s.editPolicy(context.WithoutCancel(ctx), cp, settings, restore); err != nil {
				log.Error("rollback: policy", "err", err)
				return ""
			}
			return "policy"
		})
	}

	client, err := cp.CreateOAuthClient(ctx, []string{"auth_keys"}, []string{plan.Tag}, clientDescription(env.Name))
	if err != nil {
		return Result{}, rollback(stepError(StepCreateClient, err))
	}
	undo = append(undo, func() string {
		if err := cp.DeleteKey(context.WithoutCancel(ctx), client.ID); err != nil && !errors.Is(err, tsapi.ErrNotFound) {
			log.Error("rollback: revoke OAuth client", "client", client.ID, "err", err)
			return ""
		}
		return "OAuth client " + client.ID
	})

	sealed, err := s.Vault.Seal([]byte(client.Secret), env.ID, vault.PurposeOAuthClientSecret)
	if err != nil {
		return Result{}, rollback(stepError(StepSeal, err))
	}
	detail := detailFor(plan, req.Control)
	conn := store.Connection{
		EnvID:         env.ID,
		State:         store.StateConnected,
		Tag:           plan.Tag,
		CIDRs:         plan.CIDRs,
		Warnings:      plan.Warnings,
		Targets:       targetStrings(targets),
		Detail:        detail,
		OAuthClientID: client.ID,
		Secret:        sealed,
	}
	if _, err := s.Store.PutConnection(ctx, req.OrgID, conn); err != nil {
		e := stepError(StepStore, err)
		e.Code, e.Message = "internal", "could not store the credential: "+err.Error()
		return Result{}, rollback(e)
	}
	// The new credential is stored; the previous one is no longer needed.
	if old != nil && old.OAuthClientID != "" && old.OAuthClientID != client.ID {
		if err := cp.DeleteKey(ctx, old.OAuthClientID); err != nil && !errors.Is(err, tsapi.ErrNotFound) {
			log.Warn("revoke previous OAuth client", "client", old.OAuthClientID, "err", err)
		}
	}
	log.Info("connected", "tag", plan.Tag, "cidrs", len(plan.CIDRs), "policy_written", written, "oauth_client", client.ID)
	return resultFor(env.Name, plan, written, client.ID), nil
}

// Disconnect removes the environment's policy entries, revokes its OAuth
// client and deletes its stored credential. It needs an API token: the
// stored credential can only mint auth keys.
func (s *Service) Disconnect(ctx context.Context, orgID, envName, apiToken string) (err error) {
	var control Control
	defer func() { rewordFor(control, &err) }()
	log := s.logger().With("org", orgID, "env", envName)
	env, err := s.Store.GetEnvironment(ctx, orgID, envName)
	if err != nil {
		return stepError(StepInput, err)
	}
	conn, err := s.Store.GetConnection(ctx, orgID, env.ID)
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Step: StepInput, Code: "not_connected", Message: fmt.Sprintf("environment %q has no private network connected", envName), Err: err}
	}
	if err != nil {
		return stepError(StepInput, err)
	}
	control = ControlOf(conn)
	if err := checkToken(control, apiToken); err != nil {
		return err
	}
	cp := s.adminClient(control, apiToken)
	settings, err := cp.Settings(ctx)
	if err != nil {
		return stepError(StepSettings, err)
	}
	_, policyErr := s.editPolicy(ctx, cp, settings, func(p []byte) ([]byte, error) { return grants.Remove(p, env.Name) })
	var pe *Error
	if policyErr != nil {
		if !errors.As(policyErr, &pe) || pe.Code != "policy_managed_externally" {
			return policyErr
		}
		// Git-managed policy: still revoke and forget the credential, and
		// tell the admin which entries to delete by hand.
		pe.Message = fmt.Sprintf("the policy file is managed from Git; delete the entries marked %q from it by hand (the credential was revoked)", grants.Marker(env.Name))
	}
	if err := cp.DeleteKey(ctx, conn.OAuthClientID); err != nil && !errors.Is(err, tsapi.ErrNotFound) {
		return stepError(StepRevokeClient, err)
	}
	if err := s.Store.DeleteConnection(ctx, orgID, env.ID); err != nil {
		e := stepError(StepStore, err)
		e.Code = "internal"
		return e
	}
	log.Info("disconnected", "oauth_client", conn.OAuthClientID)
	if pe != nil {
		return pe
	}
	return nil
}

// editPolicy runs read → edit → validate → write with If-Match, starting
// again from the newer policy on every 412. It reports whether it wrote.
func (s *Service) editPolicy(ctx context.Context, cp tsapi.ControlPlane, settings tsapi.Settings, edit func([]byte) ([]byte, error)) (bool, error) {
	for attempt := 1; ; attempt++ {
		pol, err := cp.Policy(ctx)
		if err != nil {
			return false, stepError(StepReadPolicy, err)
		}
		next, err := edit(pol.HuJSON)
		if err != nil {
			e := stepError(StepEditPolicy, err)
			if grants.IsPolicyError(err) {
				e.Code = "policy_invalid"
				e.Message = "the tailnet policy file could not be edited: " + err.Error()
			}
			return false, e
		}
		if bytes.Equal(next, pol.HuJSON) {
			return false, nil
		}
		if settings.ACLsExternallyManaged {
			return false, &Error{Step: StepWritePolicy, Code: "policy_managed_externally", Message: "the policy file is managed from Git"}
		}
		if err := cp.ValidatePolicy(ctx, next); err != nil {
			return false, stepError(StepValidate, err)
		}
		err = cp.SetPolicy(ctx, next, pol.ETag)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, tsapi.ErrPreconditionFailed) || attempt >= maxPolicyAttempts {
			return false, stepError(StepWritePolicy, err)
		}
		// Someone else wrote in between; back off a little so concurrent
		// writers do not collide in lockstep.
		select {
		case <-time.After(time.Duration(rand.IntN(20*attempt)+5) * time.Millisecond):
		case <-ctx.Done():
			return false, stepError(StepWritePolicy, ctx.Err())
		}
	}
}

// checkAPIToken rejects what cannot be a Tailscale API access token before
// any network call. The message never repeats the token.
func checkAPIToken(tok string) error {
	bad := func(msg string) error {
		return &Error{Step: StepInput, Code: "bad_input", Message: "api_token: " + msg}
	}
	switch {
	case tok == "":
		return bad("missing; create a one-time API access token in the Tailscale admin console")
	case !utf8.ValidString(tok) || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }):
		return bad("contains characters no Tailscale token has")
	case len(tok) > 256:
		return bad("too long to be a Tailscale API access token")
	case strings.HasPrefix(tok, "tskey-client-"), strings.HasPrefix(tok, "tskey-auth-"):
		return bad("this is an OAuth client secret or an auth key; tailgate needs an API access token (tskey-api-...)")
	case !strings.HasPrefix(tok, "tskey-api-"):
		return bad("does not look like a Tailscale API access token (tskey-api-...)")
	}
	return nil
}

func clientDescription(env string) string {
	d := "tailgate " + env
	if len(d) > 50 {
		d = d[:50]
	}
	return d
}

func targetStrings(ts []grants.Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return out
}

// tailnetView converts the API's devices for planning.
func tailnetView(devs []tsapi.Device) grants.TailnetView {
	v := grants.TailnetView{}
	suffixes := map[string]int{}
	for _, d := range devs {
		v.Devices = append(v.Devices, grants.Device{
			ID: d.ID, Name: d.Name, Hostname: d.Hostname, Addresses: d.Addresses, Tags: d.Tags,
			EnabledRoutes: d.EnabledRoutes, AdvertisedRoutes: d.AdvertisedRoutes,
		})
		if _, suffix, ok := strings.Cut(strings.TrimSuffix(d.Name, "."), "."); ok {
			suffixes[suffix]++
		}
	}
	// Every device's MagicDNS name ends in the tailnet's suffix.
	best := 0
	for s, n := range suffixes {
		if n > best || n == best && s < v.MagicDNSSuffix {
			v.MagicDNSSuffix, best = s, n
		}
	}
	return v
}

func resultFor(env string, plan grants.Plan, written bool, clientID string) Result {
	r := Result{
		Env: env, State: StateConnected, Tag: plan.Tag, CIDRs: nonNil(plan.CIDRs), Grants: nonNil(plan.Grants),
		Warnings: nonNil(plan.Warnings), PolicyWritten: written, OAuthClientID: clientID, Targets: []TargetSummary{},
	}
	for _, t := range plan.Targets {
		ts := TargetSummary{Target: t.Target.String(), Kind: fmt.Sprint(t.Kind), Warning: t.Warning, Granted: []string{}}
		for _, p := range t.Dst {
			ts.Granted = append(ts.Granted, p.String())
		}
		r.Targets = append(r.Targets, ts)
	}
	return r
}
