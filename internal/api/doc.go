// Package api is tailgate's REST API: environments, their private network
// (connect, status, verify, disconnect) and API tokens, as JSON under /v1.
//
// # Overview
//
// [New] returns one http.Handler for the whole API. It does no work of its
// own beyond HTTP: environments and tokens are kept by package store, and
// the three moments of private network access run in a [PrivateNetwork]
// (in production a *connect.Service; in tests a fake), runs in [Runs] (a
// *run.Manager).
//
// Every /v1 call carries a tailgate API token, "Authorization: Bearer
// tg_...". A missing or unknown token is 401 with a WWW-Authenticate
// header. Tokens have a role: admin may do everything; runner may read
// environments and their status, and start, keep alive and end runs. A call the
// role may not make is 403. Tenancy is by org: every lookup is scoped to
// the token's org, so another org's environment is 404, exactly as if it
// did not exist. Only GET /v1/openapi.json, GET /healthz and GET /readyz are
// public.
//
// Endpoints (the OpenAPI document, api/openapi.yaml at the repository root,
// is the reference; the server serves it at /v1/openapi.json):
//
//	POST   /v1/environments                              create {"name"}        admin
//	GET    /v1/environments                              list                   any role
//	GET    /v1/environments/{env}                        get, with its status   any role
//	DELETE /v1/environments/{env}                        delete (disconnected)  admin
//	PUT    /v1/environments/{env}/private-network        connect                admin
//	GET    /v1/environments/{env}/private-network        status                 any role
//	POST   /v1/environments/{env}/private-network/verify verify                 admin
//	DELETE /v1/environments/{env}/private-network        disconnect             admin
//	POST   /v1/environments/{env}/runs                   start a run            any role
//	GET    /v1/runs/{id}                                 get a run              any role
//	POST   /v1/runs/{id}/heartbeat                       extend its lease       any role
//	DELETE /v1/runs/{id}                                 end a run              any role
//	POST   /v1/tokens                                    create a token         admin
//	GET    /v1/openapi.json                              this API, OpenAPI 3.0  public
//	GET    /healthz                                      liveness               public
//	GET    /readyz                                       readiness (database)   public
//
// # Errors
//
// Every error, from a bad token to a failed policy write, is written by one
// function in one shape:
//
//	{"error": {"code": "policy_managed_externally", "message": "...",
//	           "step": "write policy", "fragment": "...", "rolled_back": ["..."]}}
//
// code is stable and machine-readable (see [errcode.Status]); message is a sentence
// a person can act on. Failures of the Tailscale API token are 422
// (tailscale_unauthorized, tailscale_forbidden), never 401: a 401 would
// say that the tailgate token failed.
//
// # Requests and secrets
//
// Bodies are JSON objects of at most 64 KiB, sent as application/json and
// valid UTF-8; an unknown field is a 400 that names it. The Tailscale API
// token in a connect or disconnect body is handed to the PrivateNetwork
// and nothing else: it is never logged (the access log has method, path,
// status, duration and org, never a body or query), and never echoed in an
// error, even for a body that fails to parse. As a last guard every error
// message passes through one redaction helper that removes anything shaped
// like a Tailscale credential (tskey-...) or a tailgate token (tg_...).
//
// # Usage
//
//	svc := &connect.Service{Store: st, Vault: kr, APIBaseURL: apiURL, ControlURL: controlURL, Logger: log}
//	h := api.New(api.Options{Store: st, PrivateNetwork: svc, Logger: log})
//	http.ListenAndServe("127.0.0.1:8080", h)
package api
