// Package console is tailgate's web console: server-rendered pages over
// the REST API, served by "tailgate serve" and "tailgate demo" from the
// same binary and working offline (templates and static files are
// embedded).
//
// # Overview
//
// A person signs in with a tailgate API token. The token is exchanged for
// a session cookie (HttpOnly, SameSite=Strict, Secure over TLS) and kept
// on the server, in memory, for the session's lifetime; it never reaches
// the browser again. Every page is built from API calls made in process
// through the API's own http.Handler with that token, so the API's
// authentication, roles and org boundaries decide what a session sees and
// may do: a runner token's session lists runs but its connect is the
// API's 403, and another org's environment is the API's 404.
//
// Pages: environments with their private network's state; an
// environment's connect form, connect result (granted CIDRs, each
// target's kind, warnings), verification verdicts and disconnect; runs
// and one run's network report; API tokens (create a runner token, list,
// revoke).
//
// Every form carries a per-session CSRF token, and cross-origin POSTs are
// refused before it is read (http.CrossOriginProtection). Pages load no
// inline script or style: the Content-Security-Policy allows only the
// console's own files and forbids framing.
//
// # Usage
//
//	apiHandler := api.New(api.Options{...})
//	http.ListenAndServe(addr, console.Wrap(apiHandler, console.Options{}))
//
// Wrap serves "/" and "/console/..." and hands every other path to the
// API. Sessions live in the process: a restart signs everyone out, and
// replicas behind a load balancer need sticky sessions.
package console
