package connect

import (
	"encoding/json"
	"errors"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/grants"
	"github.com/tailgate-dev/tailgate/internal/outbound"
)

// controlEnv is the server configuration the control-plane providers use.
func (s *Service) controlEnv() *controlplane.Env {
	return &controlplane.Env{
		APIBaseURL: s.APIBaseURL, ControlURL: s.ControlURL, Outbound: s.Outbound,
		NewAPIClient: s.NewAPIClient, NewOAuthClient: s.NewOAuthClient,
	}
}

// provider is the control plane c names, or a bad_input *Error.
func (s *Service) provider(c controlplane.Control) (controlplane.Provider, error) {
	p, err := s.controlEnv().For(c)
	if err != nil {
		return nil, inputError(err)
	}
	return p, nil
}

// inputError turns a provider's *InputError into bad_input.
func inputError(err error) *Error {
	var ie *controlplane.InputError
	if errors.As(err, &ie) {
		return &Error{Step: StepInput, Code: errcode.BadInput, Message: ie.Error(), Err: err}
	}
	return nil
}

// refusedOutbound turns a call the outbound policy refused, whatever step
// made it, into bad_input naming the control URL's address and why.
func refusedOutbound(e *Error) {
	var refused *outbound.RefusedError
	if errors.As(e.Err, &refused) {
		e.Code = errcode.BadInput
		e.Message = "control.url: " + refused.Error()
	}
}

// planOf reads back the grant plan a connection stored.
func planOf(detail json.RawMessage) (grants.Plan, bool) {
	var p grants.Plan
	if json.Unmarshal(detail, &p) != nil || p.Tag == "" {
		return grants.Plan{}, false
	}
	return p, true
}
