package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/store"
)

// Codes are the stable error codes of the API, with the HTTP status each
// is answered with. Clients switch on the code; the OpenAPI document lists
// the same set (a test keeps them in step).
var Codes = map[string]int{
	CodeUnauthenticated:         http.StatusUnauthorized,
	CodeForbidden:               http.StatusForbidden,
	CodeNotFound:                http.StatusNotFound,
	CodeMethodNotAllowed:        http.StatusMethodNotAllowed,
	CodeInvalidJSON:             http.StatusBadRequest,
	CodeBadInput:                http.StatusBadRequest,
	CodeBodyTooLarge:            http.StatusRequestEntityTooLarge,
	CodeUnsupportedMediaType:    http.StatusUnsupportedMediaType,
	CodeEnvironmentExists:       http.StatusConflict,
	CodeEnvironmentConnected:    http.StatusConflict,
	CodeNotConnected:            http.StatusConflict,
	CodePolicyConflict:          http.StatusConflict,
	CodePolicyManagedExternally: http.StatusConflict,
	CodeTailnetLock:             http.StatusConflict,
	CodeRunEnded:                http.StatusConflict,
	CodeCredentialRevoked:       http.StatusConflict,
	CodeJoinFailed:              http.StatusBadGateway,
	CodeRunsUnavailable:         http.StatusServiceUnavailable,
	CodeTailscaleUnauthorized:   http.StatusUnprocessableEntity,
	CodeTailscaleForbidden:      http.StatusUnprocessableEntity,
	CodePolicyInvalid:           http.StatusUnprocessableEntity,
	CodeUpstream:                http.StatusBadGateway,
	CodeInternal:                http.StatusInternalServerError,
}

// The error codes. Their meaning is documented in api/openapi.yaml
// (components.schemas.Error).
const (
	CodeUnauthenticated         = "unauthenticated"
	CodeForbidden               = "forbidden"
	CodeNotFound                = "not_found"
	CodeMethodNotAllowed        = "method_not_allowed"
	CodeInvalidJSON             = "invalid_json"
	CodeBadInput                = "bad_input"
	CodeBodyTooLarge            = "body_too_large"
	CodeUnsupportedMediaType    = "unsupported_media_type"
	CodeEnvironmentExists       = "environment_exists"
	CodeEnvironmentConnected    = "environment_connected"
	CodeNotConnected            = "not_connected"
	CodePolicyConflict          = "policy_conflict"
	CodePolicyManagedExternally = "policy_managed_externally"
	CodeTailnetLock             = "tailnet_lock"
	CodeRunEnded                = "run_ended"
	CodeCredentialRevoked       = "credential_revoked"
	CodeJoinFailed              = "join_failed"
	CodeRunsUnavailable         = "runs_unavailable"
	CodeTailscaleUnauthorized   = "tailscale_unauthorized"
	CodeTailscaleForbidden      = "tailscale_forbidden"
	CodePolicyInvalid           = "policy_invalid"
	CodeUpstream                = "upstream"
	CodeInternal                = "internal"
)

// Error is the body of every error answer, under the key "error".
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Step is the step of connect or disconnect that failed.
	Step string `json:"step,omitempty"`
	// Fragment is the HuJSON a customer whose policy is managed from Git
	// pastes in themselves (policy_managed_externally).
	Fragment string `json:"fragment,omitempty"`
	// RolledBack lists what was undone after a failed connect.
	RolledBack []string `json:"rolled_back,omitempty"`

	status int    // HTTP status; from Codes when zero
	allow  string // the Allow header of a 405
	cause  error  // logged for 5xx, never sent
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// ErrorBody is the JSON document of an error answer.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// apiErr builds an error answer with a code from Codes.
func apiErr(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// classify turns any error a handler returns into the answer to send.
// Errors that are not already an *Error are mapped by kind: connect's
// step errors by their code, the store's by its sentinels, anything else
// is internal (its text is logged, not sent).
func classify(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return fromConnect(ce)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &Error{Code: CodeNotFound, Message: "no such environment", cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeUpstream, Message: "the operation timed out; try again", status: http.StatusGatewayTimeout, cause: err}
	}
	return &Error{Code: CodeInternal, Message: "internal error; the server log has the details", cause: err}
}

// fromConnect maps connect's codes onto the API's. The Tailscale token's
// unauthorized/forbidden become 422 with their own codes, because a 401 or
// 403 here would say the tailgate token failed.
func fromConnect(ce *connect.Error) *Error {
	e := &Error{
		Message:    ce.Message,
		Step:       string(ce.Step),
		Fragment:   ce.Fragment,
		RolledBack: ce.RolledBack,
		cause:      ce,
	}
	switch ce.Code {
	case "bad_input":
		e.Code = CodeBadInput
	case "unauthorized":
		e.Code = CodeTailscaleUnauthorized
	case "forbidden":
		e.Code = CodeTailscaleForbidden
	case "not_found":
		e.Code = CodeNotFound
	case "not_connected":
		e.Code = CodeNotConnected
	case "policy_conflict":
		e.Code = CodePolicyConflict
	case "policy_managed_externally":
		e.Code = CodePolicyManagedExternally
	case "policy_invalid":
		e.Code = CodePolicyInvalid
	case "tailnet_lock":
		e.Code = CodeTailnetLock
	case "upstream":
		e.Code = CodeUpstream
	default: // "internal" and anything new
		e.Code = CodeInternal
	}
	if e.Message == "" {
		e.Message = ce.Error()
	}
	return e
}

// writeError is the one place an error answer is written. It redacts every
// text it sends, and logs the cause of a server-side failure (redacted too).
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error, secrets ...string) {
	e := classify(err)
	status := e.status
	if status == 0 {
		status = Codes[e.Code]
	}
	if status == 0 {
		status = http.StatusInternalServerError
	}
	out := &Error{
		Code:     e.Code,
		Message:  redact(e.Message, secrets...),
		Step:     e.Step,
		Fragment: redact(e.Fragment, secrets...),
	}
	for _, rb := range e.RolledBack {
		out.RolledBack = append(out.RolledBack, redact(rb, secrets...))
	}
	if status >= 500 && e.cause != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.String("code", e.Code), slog.String("error", redact(e.cause.Error(), secrets...)))
	}
	if status == http.StatusUnauthorized {
		// RFC 6750: a request without credentials gets the bare challenge,
		// one with a bad token is told the token is invalid.
		challenge := `Bearer realm="tailgate"`
		if r.Header.Get("Authorization") != "" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	if e.allow != "" {
		w.Header().Set("Allow", e.allow)
	}
	writeJSON(w, status, ErrorBody{Error: out})
}

// writeJSON writes v as the answer. Encoding our own types cannot fail in
// a way the client could be told about, so errors are ignored.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// credentialPattern matches anything shaped like a Tailscale credential
// (API token, OAuth client secret, auth key) or a tailgate API token.
var credentialPattern = regexp.MustCompile(`tskey-[a-z]+-[A-Za-z0-9_-]{4,}|tg_[a-z2-7]{16,}`)

// redact is the single secret-redaction helper: it removes the given
// secrets verbatim and anything shaped like a credential from s. Every
// text the API sends in an error or writes to a log passes through it.
func redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return credentialPattern.ReplaceAllString(s, "[redacted]")
}
