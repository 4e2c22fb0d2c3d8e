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
// The policy checks are the ones tailgate depends on, not Tailscale's full
// parser: HuJSON syntax, known top-level sections, every tag used in
// src/dst/via defined in tagOwners, no "0.0.0.0/0" or "::/0" destinations,
// ports only in a grant's "ip" (never in "dst"), no DNS names as hosts, and
// policy "tests" evaluated against grants and acls (a failure rejects a
// write with 400 and makes validate answer a message).
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
package fake
