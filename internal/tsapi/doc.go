// Package tsapi is tailgate's access to a tailnet's control plane.
//
// # Overview
//
// ControlPlane is the small set of calls connect, verify and run need:
// read and write the policy file (HuJSON, with ETag / If-Match so that a
// concurrent edit is never overwritten), validate it, read the settings
// that say whether the policy is managed from Git, create the least
// privilege OAuth client tailgate keeps, mint short-lived auth keys for
// runner nodes, list devices and their subnet routes, approve routes, and
// clean up devices and keys.
//
// Client implements it for Tailscale over the official API client,
// tailscale.com/client/tailscale/v2; package fake serves the same API in
// memory for tests. A headscale implementation lives elsewhere.
//
// # Errors
//
// Failures are values to test, not strings to parse:
//
//	errors.Is(err, tsapi.ErrPreconditionFailed) // 412: re-read the policy and retry
//	errors.Is(err, tsapi.ErrUnauthorized)       // 401: token unknown, expired or revoked
//	errors.Is(err, tsapi.ErrForbidden)          // 403: valid token, missing scope
//	errors.Is(err, tsapi.ErrNotFound)           // 404: no such device or key
//	errors.As(err, new(*tsapi.PolicyInvalidError)) // the policy was refused; Message and Details say why
//	errors.As(err, new(*tsapi.APIError))        // any other API answer: Status and Message
//	errors.As(err, new(*tsapi.CallError))       // no answer: network, timeout (errors.Is context errors)
//
// No error produced here contains a credential: API tokens, OAuth secrets
// and auth keys (anything starting with "tskey-") are redacted from every
// message, and OAuthClient / AuthKey print their secrets as [redacted].
//
// # Usage
//
//	cp := tsapi.NewWithAPIToken("https://api.tailscale.com", token) // or a fake's URL
//	p, err := cp.Policy(ctx)
//	// ... edit p.HuJSON, keeping comments (package grants) ...
//	err = cp.SetPolicy(ctx, edited, p.ETag)
//	if errors.Is(err, tsapi.ErrPreconditionFailed) { /* re-read, re-edit, retry */ }
//
//	oc, err := cp.CreateOAuthClient(ctx, []string{"auth_keys"}, []string{"tag:tailgate-env"}, "tailgate env")
//	runner := tsapi.NewWithOAuth(ctx, baseURL, oc.ID, oc.Secret, nil)
//	key, err := runner.CreateAuthKey(ctx, tsapi.AuthKeyRequest{
//		Ephemeral: true, Preauthorized: true, Tags: []string{"tag:tailgate-env"},
//		Expiry: 5 * time.Minute, Description: "tailgate run",
//	})
package tsapi
