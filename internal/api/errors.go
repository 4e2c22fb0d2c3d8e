package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	redactpkg "github.com/tailgate-dev/tailgate/internal/redact"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/store"
)

// Error is the body of every error answer, under the key "error".
type Error struct {
	Code    errcode.Code `json:"code"`
	Message string       `json:"message"`
	// Step is the step of connect or disconnect that failed.
	Step string `json:"step,omitempty"`
	// Fragment is the HuJSON a customer whose policy is managed from Git
	// pastes in themselves (policy_managed_externally).
	Fragment string `json:"fragment,omitempty"`
	// RolledBack lists what was undone after a failed connect.
	RolledBack []string `json:"rolled_back,omitempty"`

	status int    // HTTP status; from errcode.Status when zero
	allow  string // the Allow header of a 405
	cause  error  // logged for 5xx, never sent
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// ErrorBody is the JSON document of an error answer.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// apiErr builds an error answer with a code from package errcode.
func apiErr(code errcode.Code, format string, args ...any) *Error {
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
		return &Error{Code: errcode.NotFound, Message: "no such environment", cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: errcode.Upstream, Message: "the operation timed out; try again", status: http.StatusGatewayTimeout, cause: err}
	}
	return &Error{Code: errcode.Internal, Message: "internal error; the server log has the details", cause: err}
}

// fromConnect words connect's error for the answer. connect uses the
// registry's codes (package errcode): a control plane refusing the admin's
// one-time token is tailscale_unauthorized or tailscale_forbidden (422),
// because a 401 or 403 here would say the tailgate token failed.
func fromConnect(ce *connect.Error) *Error {
	e := &Error{
		Message:    ce.Message,
		Step:       string(ce.Step),
		Fragment:   ce.Fragment,
		RolledBack: ce.RolledBack,
		cause:      ce,
	}
	// connect speaks the registry's codes; anything unknown is internal.
	e.Code = ce.Code
	if _, ok := errcode.Status[e.Code]; !ok {
		e.Code = errcode.Internal
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
		status = errcode.Status[e.Code]
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
			slog.String("code", string(e.Code)), slog.String("error", redact(e.cause.Error(), secrets...)))
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

// redact removes the given secrets and anything shaped like a credential
// from s (package redact). Every text the API sends in an error or writes
// to a log passes through it.
func redact(s string, secrets ...string) string { return redactpkg.Secrets(s, secrets...) }
