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

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/target"

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
func (s *Service) Connect(ctx context.Context, req Request) (Result, error) {
	log := s.logger().With("org", req.OrgID, "env", req.Env)
	p, err := s.provider(req.Control)
	if err != nil {
		return Result{}, err
	}
	if err := p.CheckAdminCredential(req.APIToken); err != nil {
		return Result{}, inputError(err)
	}
	se := errorsFor(p)
	targets, err := target.ParseList(req.Targets)
	if err != nil {
		return Result{}, se.at(StepInput, err)
	}
	env, err := s.Store.GetEnvironment(ctx, req.OrgID, req.Env)
	if err != nil {
		return Result{}, se.at(StepInput, err)
	}
	var old *store.Connection
	if c, err := s.Store.GetConnection(ctx, req.OrgID, env.ID); err == nil {
		old = &c
	} else if !errors.Is(err, store.ErrNotFound) {
		return Result{}, se.at(StepInput, err)
	}

	cp := p.AdminClient(req.APIToken)
	settings, err := cp.Settings(ctx)
	if err != nil {
		return Result{}, se.at(StepSettings, err)
	}
	if settings.TailnetLock {
		return Result{}, &Error{Step: StepSettings, Code: errcode.TailnetLock,
			Message: "Tailnet Lock is enabled: auth keys minted by an OAuth client need signing, so tailgate's nodes could not join; sign tailgate's keys or disable Tailnet Lock"}
	}
	devices, err := cp.Devices(ctx)
	if err != nil {
		return Result{}, se.at(StepDevices, err)
	}
	plan, err := grants.NewPlan(env.Name, targets, tailnetView(devices))
	if err != nil {
		return Result{}, se.at(StepPlan, err)
	}
	if owners, err := p.TagOwners(ctx, cp); err != nil {
		return Result{}, se.at(StepPlan, err)
	} else if owners != nil {
		plan.TagOwners = owners
	}

	written, err := s.editPolicy(ctx, se, cp, settings, func(p []byte) ([]byte, error) { return grants.Apply(p, plan) })
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == errcode.PolicyManagedExternally {
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
				prev, ok := planOf(old.Detail)
				if !ok {
					return p, nil
				}
				return grants.Apply(p, prev)
			}
			if _, err := s.editPolicy(context.WithoutCancel(ctx), se, cp, settings, restore); err != nil {
				log.Error("rollback: policy", "err", err)
				return ""
			}
			return "policy"
		})
	}

	cred, cerr := s.createCredential(ctx, se, cp, p, req.OrgID, env, plan.Tag)
	if cerr != nil {
		return Result{}, rollback(cerr)
	}
	undo = append(undo, func() string {
		if err := cp.DeleteKey(context.WithoutCancel(ctx), cred.ID); err != nil && !errors.Is(err, tsapi.ErrNotFound) {
			log.Error("rollback: revoke credential", "credential", cred.Kind, "id", cred.ID, "err", err)
			return ""
		}
		return credentialWords(cred.Kind) + " " + cred.ID
	})

	var sealed vault.Sealed
	if cred.Secret != "" {
		if sealed, err = s.Vault.Seal([]byte(cred.Secret), env.ID, vault.PurposeOAuthClientSecret); err != nil {
			return Result{}, rollback(se.at(StepSeal, err))
		}
	}
	detail, _ := json.Marshal(plan)
	conn := store.Connection{
		EnvID:         env.ID,
		State:         store.StateConnected,
		Tag:           plan.Tag,
		CIDRs:         plan.CIDRs,
		Warnings:      plan.Warnings,
		Targets:       targets,
		Control:       p.Control(),
		Detail:        detail,
		Credential:    cred.Kind,
		OAuthClientID: cred.ID,
		Audience:      cred.Audience,
		Secret:        sealed,
	}
	if _, err := s.Store.PutConnection(ctx, req.OrgID, conn); err != nil {
		e := se.at(StepStore, err)
		e.Code, e.Message = errcode.Internal, "could not store the credential: "+err.Error()
		return Result{}, rollback(e)
	}
	// The new credential is stored; the previous one is no longer needed.
	if old != nil && old.OAuthClientID != "" && old.OAuthClientID != cred.ID {
		if err := cp.DeleteKey(ctx, old.OAuthClientID); err != nil && !errors.Is(err, tsapi.ErrNotFound) {
			log.Warn("revoke previous credential", "credential", old.Credential, "id", old.OAuthClientID, "err", err)
		}
	}
	log.Info("connected", "tag", plan.Tag, "cidrs", len(plan.CIDRs), "policy_written", written, "credential", cred.Kind, "credential_id", cred.ID)
	r := resultFor(env.Name, plan, written, cred.ID)
	r.Credential = cred.Kind
	return r, nil
}

// newCredential is the credential connect just created; Secret is empty
// for a federated identity.
type newCredential struct {
	Kind     controlplane.CredentialKind
	ID       string
	Secret   string
	Audience string
}

// createCredential creates the environment's durable credential, the
// strongest the control allows: a federated identity that trusts this
// server's ID tokens when the server is an issuer and the control can
// federate, else the control's credential with a secret (an OAuth client
// with scope auth_keys and the tag, or a headscale pre-auth key).
//
// A control that can federate but refuses to is an error, not a reason
// to fall back: an admin who configured a public URL asked for no stored
// secret.
func (s *Service) createCredential(ctx context.Context, se stepErrors, cp tsapi.ControlPlane, p controlplane.Provider, orgID string, env store.Environment, tag string) (newCredential, *Error) {
	if s.Issuer != nil && p.CanFederate() {
		fi, err := cp.CreateFederatedIdentity(ctx, tsapi.FederatedIdentityRequest{
			Scopes: []string{"auth_keys"}, Tags: []string{tag},
			Issuer: s.Issuer.IssuerURL(), Subject: Subject(orgID, env.Name),
			Description: clientDescription(env.Name),
		})
		if err != nil {
			e := se.at(StepCreateIdentity, err)
			if e.Code == errcode.Upstream {
				e.Message = fmt.Sprintf("%s could not create a federated identity for issuer %s: %s (tailgate stores no secret when it has a public URL; remove --public-url to keep an OAuth client instead)",
					p.Words().Product, s.Issuer.IssuerURL(), e.Message)
			}
			return newCredential{}, e
		}
		return newCredential{Kind: controlplane.FederatedIdentity, ID: fi.ID, Audience: fi.Audience}, nil
	}
	client, err := cp.CreateOAuthClient(ctx, []string{"auth_keys"}, []string{tag}, clientDescription(env.Name))
	if err != nil {
		return newCredential{}, se.at(StepCreateClient, err)
	}
	return newCredential{Kind: p.Control().StoredCredential(), ID: client.ID, Secret: client.Secret}, nil
}

// credentialWords name a kind of credential in messages.
func credentialWords(k controlplane.CredentialKind) string {
	switch k {
	case controlplane.FederatedIdentity:
		return "federated identity"
	case controlplane.PreAuthKey:
		return "pre-auth key"
	}
	return "OAuth client"
}

// Disconnect removes the environment's policy entries, revokes its
// credential (OAuth client, federated identity or pre-auth key) and
// deletes what was stored of it. It needs an API token: the
// stored credential can only mint auth keys.
func (s *Service) Disconnect(ctx context.Context, orgID, envName, apiToken string) error {
	log := s.logger().With("org", orgID, "env", envName)
	env, err := s.Store.GetEnvironment(ctx, orgID, envName)
	if err != nil {
		return stepError(StepInput, err)
	}
	conn, err := s.Store.GetConnection(ctx, orgID, env.ID)
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Step: StepInput, Code: errcode.NotConnected, Message: fmt.Sprintf("environment %q has no private network connected", envName), Err: err}
	}
	if err != nil {
		return stepError(StepInput, err)
	}
	p, err := s.provider(conn.Control)
	if err != nil {
		return err
	}
	if err := p.CheckAdminCredential(apiToken); err != nil {
		return inputError(err)
	}
	se := errorsFor(p)
	cp := p.AdminClient(apiToken)
	settings, err := cp.Settings(ctx)
	if err != nil {
		return se.at(StepSettings, err)
	}
	_, policyErr := s.editPolicy(ctx, se, cp, settings, func(p []byte) ([]byte, error) { return grants.Remove(p, env.Name) })
	var pe *Error
	if policyErr != nil {
		if !errors.As(policyErr, &pe) || pe.Code != errcode.PolicyManagedExternally {
			return policyErr
		}
		// Git-managed policy: still revoke and forget the credential, and
		// tell the admin which entries to delete by hand.
		pe.Message = fmt.Sprintf("the policy file is managed from Git; delete the entries marked %q from it by hand (the credential was revoked)", grants.Marker(env.Name))
	}
	if err := cp.DeleteKey(ctx, conn.OAuthClientID); err != nil && !errors.Is(err, tsapi.ErrNotFound) {
		return se.at(StepRevokeClient, err)
	}
	if err := s.Store.DeleteConnection(ctx, orgID, env.ID); err != nil {
		e := se.at(StepStore, err)
		e.Code = errcode.Internal
		return e
	}
	log.Info("disconnected", "credential", conn.Credential, "credential_id", conn.OAuthClientID)
	if pe != nil {
		return pe
	}
	return nil
}

// editPolicy runs read → edit → validate → write with If-Match, starting
// again from the newer policy on every 412. It reports whether it wrote.
func (s *Service) editPolicy(ctx context.Context, se stepErrors, cp tsapi.ControlPlane, settings tsapi.Settings, edit func([]byte) ([]byte, error)) (bool, error) {
	for attempt := 1; ; attempt++ {
		pol, err := cp.Policy(ctx)
		if err != nil {
			return false, se.at(StepReadPolicy, err)
		}
		next, err := edit(pol.HuJSON)
		if err != nil {
			e := se.at(StepEditPolicy, err)
			if grants.IsPolicyError(err) {
				e.Code = errcode.PolicyInvalid
				e.Message = "the tailnet policy file could not be edited: " + err.Error()
			}
			return false, e
		}
		if bytes.Equal(next, pol.HuJSON) {
			return false, nil
		}
		if settings.ACLsExternallyManaged {
			return false, &Error{Step: StepWritePolicy, Code: errcode.PolicyManagedExternally, Message: "the policy file is managed from Git"}
		}
		if err := cp.ValidatePolicy(ctx, next); err != nil {
			return false, se.at(StepValidate, err)
		}
		err = cp.SetPolicy(ctx, next, pol.ETag)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, tsapi.ErrPreconditionFailed) || attempt >= maxPolicyAttempts {
			return false, se.at(StepWritePolicy, err)
		}
		// Someone else wrote in between; back off a little so concurrent
		// writers do not collide in lockstep.
		select {
		case <-time.After(time.Duration(rand.IntN(20*attempt)+5) * time.Millisecond):
		case <-ctx.Done():
			return false, se.at(StepWritePolicy, ctx.Err())
		}
	}
}

func clientDescription(env string) string {
	d := "tailgate " + env
	if len(d) > 50 {
		d = d[:50]
	}
	return d
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
