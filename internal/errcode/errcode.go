// Package errcode is the one registry of tailgate's stable error codes,
// with the HTTP status the API answers each with. connect, run and the
// REST API all speak these codes, so a code means the same thing wherever
// it appears; api/openapi.yaml documents them for clients.
package errcode

import "net/http"

// Code is a stable, machine-readable error code.
type Code string

// The codes.
const (
	// Unauthenticated: the tailgate API token is missing, unknown or revoked.
	Unauthenticated Code = "unauthenticated"
	// Forbidden: the tailgate token's role may not do this (a runner token connecting, say).
	Forbidden Code = "forbidden"
	// NotFound: no such environment or run (or not this org's).
	NotFound Code = "not_found"
	// MethodNotAllowed: the path does not take this method.
	MethodNotAllowed Code = "method_not_allowed"
	// InvalidJSON: the body is not strict JSON (unknown, duplicate or case-folded keys included).
	InvalidJSON Code = "invalid_json"
	// BadInput: a field is wrong; the message says which and why.
	BadInput Code = "bad_input"
	// BodyTooLarge: the body is over the size limit.
	BodyTooLarge Code = "body_too_large"
	// UnsupportedMediaType: the body is not application/json.
	UnsupportedMediaType Code = "unsupported_media_type"
	// EnvironmentExists: an environment of that name exists.
	EnvironmentExists Code = "environment_exists"
	// EnvironmentConnected: the environment is connected; disconnect it first.
	EnvironmentConnected Code = "environment_connected"
	// NotConnected: the environment has no private network connected.
	NotConnected Code = "not_connected"
	// PolicyConflict: the tailnet policy kept changing while tailgate edited it.
	PolicyConflict Code = "policy_conflict"
	// PolicyManagedExternally: the policy file is managed from Git; paste the fragment.
	PolicyManagedExternally Code = "policy_managed_externally"
	// TailnetLock: Tailnet Lock is on, so tailgate's nodes could not join.
	TailnetLock Code = "tailnet_lock"
	// RunEnded: the run has ended.
	RunEnded Code = "run_ended"
	// CredentialRevoked: the environment's stored credential was refused by the control plane.
	CredentialRevoked Code = "credential_revoked"
	// JoinFailed: a node could not join the tailnet.
	JoinFailed Code = "join_failed"
	// RunsUnavailable: this server does not run runs.
	RunsUnavailable Code = "runs_unavailable"
	// TailscaleUnauthorized: the control plane refused the admin's one-time API token.
	TailscaleUnauthorized Code = "tailscale_unauthorized"
	// TailscaleForbidden: the admin's one-time API token lacks a permission.
	TailscaleForbidden Code = "tailscale_forbidden"
	// PolicyInvalid: the control plane refused the edited policy, or the policy could not be edited.
	PolicyInvalid Code = "policy_invalid"
	// AllowlistUnavailable: this server does not publish a Network Allowlist.
	AllowlistUnavailable Code = "allowlist_unavailable"
	// EgressConfigured: the egress address comes from the server's configuration; change it there.
	EgressConfigured Code = "egress_configured"
	// Upstream: the control plane failed or timed out.
	Upstream Code = "upstream"
	// Internal: a server-side failure; the server log has the details.
	Internal Code = "internal"
)

// Status is the HTTP status of each code.
var Status = map[Code]int{
	Unauthenticated:         http.StatusUnauthorized,
	Forbidden:               http.StatusForbidden,
	NotFound:                http.StatusNotFound,
	MethodNotAllowed:        http.StatusMethodNotAllowed,
	InvalidJSON:             http.StatusBadRequest,
	BadInput:                http.StatusBadRequest,
	BodyTooLarge:            http.StatusRequestEntityTooLarge,
	UnsupportedMediaType:    http.StatusUnsupportedMediaType,
	EnvironmentExists:       http.StatusConflict,
	EnvironmentConnected:    http.StatusConflict,
	NotConnected:            http.StatusConflict,
	PolicyConflict:          http.StatusConflict,
	PolicyManagedExternally: http.StatusConflict,
	TailnetLock:             http.StatusConflict,
	RunEnded:                http.StatusConflict,
	CredentialRevoked:       http.StatusConflict,
	JoinFailed:              http.StatusBadGateway,
	RunsUnavailable:         http.StatusServiceUnavailable,
	TailscaleUnauthorized:   http.StatusUnprocessableEntity,
	TailscaleForbidden:      http.StatusUnprocessableEntity,
	PolicyInvalid:           http.StatusUnprocessableEntity,
	AllowlistUnavailable:    http.StatusServiceUnavailable,
	EgressConfigured:        http.StatusConflict,
	Upstream:                http.StatusBadGateway,
	Internal:                http.StatusInternalServerError,
}
