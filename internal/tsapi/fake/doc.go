// Package fake is an in-memory Tailscale API v2 server for tests and the
// sandbox.
//
// # Overview
//
// tailgate talks to Tailscale's control plane through the official Go
// client (package tsapi). This package answers that client the way
// api.tailscale.com does, for exactly the endpoints tailgate uses, so that
// connect, verify and run can be exercised offline, including their
// failure paths:
//
//	GET  /api/v2/tailnet/-/acl            HuJSON (or JSON with Accept: application/json), quoted ETag
//	POST /api/v2/tailnet/-/acl            whole-file replace; If-Match → 412 "precondition failed, invalid old hash"
//	POST /api/v2/tailnet/-/acl/validate   always 200; invalid iff the body has a "message"
//	GET  /api/v2/tailnet/-/settings       aclsExternallyManagedOn, aclsExternalLink, ...
//	POST /api/v2/tailnet/-/keys           auth keys, and OAuth clients (keyType "client")
//	DELETE /api/v2/tailnet/-/keys/{id}    revokes auth keys, API tokens and OAuth clients
//	GET  /api/v2/tailnet/-/devices        ?fields=all adds advertisedRoutes / enabledRoutes
//	GET|POST /api/v2/device/{id}/routes   POST {"routes":[...]} replaces the enabled set
//	DELETE /api/v2/device/{id}
//	POST /api/v2/oauth/token              client_credentials → 1-hour bearer token
//
// The policy checks follow Tailscale's own verdicts, in its words where
// they are known: HuJSON syntax, known top-level sections, tags defined in
// tagOwners, ports only in a grant's "ip", no DNS names as hosts, no
// "0.0.0.0/0" or "::/0" destinations, autogroup:self only as a destination
// and only for user sources, no autogroup:danger-all destination, no app
// grants to autogroup:internet, app capability names of the form
// {domain}/{path} (outside tailscale.com but for the few it grants), "ip"
// entries ("icmp" alone and port 0 are refused), nodeAttrs targets and IP
// pools, ssh rules (action, users, checkPeriod, acceptEnv, destinations
// and which sources may reach them), and "tests" and "sshTests" evaluated
// against the grants, acls and ssh rules: a failure rejects a write with
// 400 "test(s) failed" and per-source details, and makes validate answer
// that message. Empty src/dst arrays and user:*@domain selectors are
// accepted, as they are by Tailscale.
//
// Where a message is Tailscale's, the code says so ("captured": recorded
// from Tailscale's SaaS by headscale's compatibility data in
// github.com/juanfont/headscale, hscontrol/policy/v2/testdata). Tests are
// evaluated by name (tags, users, groups, hosts, CIDRs); an IP address is
// not linked to the device that holds it, and user:*@domain accepts any
// domain, as the fake has no notion of the tailnet's own domains.
//
// Credentials look like real ones (tskey-api-, tskey-client-, tskey-auth-
// followed by "<id>-<secret>"); only their hashes are kept and they are
// compared in constant time. OAuth scopes are enforced per endpoint (a
// token with only "auth_keys" gets 403 on policy writes, devices and
// settings), and auth keys minted with an OAuth token must carry tags the
// client owns. Errors are {"message": "..."} with the real status codes.
//
// # Usage
//
// The device list and route/device changes go through a Tailnet, which the
// sandbox implements over its in-process tailnet; MemTailnet serves unit
// tests:
//
//	tn := new(fake.MemTailnet)
//	tn.Add(fake.Device{NodeID: "n1", Name: "app.example.ts.net", Addresses: []string{"100.64.0.1"}})
//	api := fake.New(fake.Options{Tailnet: tn})
//	srv := httptest.NewServer(api) // serves /api/v2/...
//	token := api.NewAPIToken(fake.TokenOptions{}) // full access, like an admin's token
//	c := tsapi.NewWithAPIToken(srv.URL, token)
//
// Tests then inspect the outcome with Policy and Keys, seed a customer's
// policy with SetPolicy, and inject one-shot failures with FailNext.
//
// A control server that enforces the policy (the sandbox) resolves the
// stored policy's grants and acls to device addresses with AccessRules,
// and hears of every write through Options.OnPolicyChange.
package fake
