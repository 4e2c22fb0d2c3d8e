package egress

import (
	"errors"
	"net/http"
)

// ErrNameNotInTailnet is what a Resolver wraps when a name has no answer in
// the tailnet (neither MagicDNS nor split DNS). A *net.DNSError with
// IsNotFound, or an empty answer, means the same.
var ErrNameNotInTailnet = errors.New("name does not resolve in the tailnet")

// ErrNotViaTailnet is what a Dialer wraps when it refuses an address because
// the tailnet does not route it (dialling would use the host network).
var ErrNotViaTailnet = errors.New("address is not routed through the tailnet")

// Reason is the stable machine code of a refusal, sent to HTTP clients in
// the X-Tailgate-Refusal header and recorded in [Event].Reason.
type Reason string

const (
	// ReasonNotATarget: the host is not one of the environment's targets.
	ReasonNotATarget Reason = "not_a_target"
	// ReasonPortNotATarget: the host is a target, but not on this port.
	ReasonPortNotATarget Reason = "port_not_a_target"
	// ReasonNameNotInTailnet: the target name does not resolve in the tailnet.
	ReasonNameNotInTailnet Reason = "name_not_in_tailnet"
	// ReasonResolveFailed: the tailnet resolver failed for another reason.
	ReasonResolveFailed Reason = "resolve_failed"
	// ReasonNotViaTailnet: the address is not routed through the tailnet;
	// reaching it would use the host network.
	ReasonNotViaTailnet Reason = "not_via_tailnet"
	// ReasonDialFailed: the tailnet connection to the target failed.
	ReasonDialFailed Reason = "dial_failed"
	// ReasonBadRequest: the client's request could not be understood.
	ReasonBadRequest Reason = "bad_request"
	// ReasonUnsupported: a SOCKS5 command, address type or auth method, or an
	// HTTP request form, that the proxy does not offer.
	ReasonUnsupported Reason = "unsupported"
	// ReasonProxyClosed: the run ended while the request was in flight.
	ReasonProxyClosed Reason = "proxy_closed"
)

// Refusal is why the proxy did not connect a request. Its Text is a short
// sentence for a person, naming the rule; it never contains secrets.
type Refusal struct {
	Reason Reason
	Text   string
	// socks is the SOCKS5 reply code that fits, when the caller is SOCKS5.
	socks byte
}

func (r *Refusal) Error() string { return r.Text }

func refuse(reason Reason, text string) *Refusal {
	return &Refusal{Reason: reason, Text: text}
}

// HTTPStatus is the status an HTTP client sees for this refusal.
func (r *Refusal) HTTPStatus() int {
	switch r.Reason {
	case ReasonNameNotInTailnet, ReasonResolveFailed, ReasonDialFailed:
		return http.StatusBadGateway
	case ReasonBadRequest, ReasonUnsupported:
		return http.StatusBadRequest
	case ReasonProxyClosed:
		return http.StatusServiceUnavailable
	default:
		return http.StatusForbidden
	}
}

// SOCKS5 reply codes (RFC 1928 section 6).
const (
	socksSucceeded           byte = 0x00
	socksGeneralFailure      byte = 0x01
	socksNotAllowed          byte = 0x02
	socksHostUnreachable     byte = 0x04
	socksConnectionRefused   byte = 0x05
	socksCommandNotSupported byte = 0x07
	socksAddrTypeUnsupported byte = 0x08
)

// SOCKSReply is the SOCKS5 reply code a SOCKS client sees for this refusal.
func (r *Refusal) SOCKSReply() byte {
	if r.socks != 0 {
		return r.socks
	}
	switch r.Reason {
	case ReasonNotATarget, ReasonPortNotATarget, ReasonNotViaTailnet:
		return socksNotAllowed
	case ReasonNameNotInTailnet, ReasonResolveFailed:
		return socksHostUnreachable
	case ReasonDialFailed:
		return socksConnectionRefused
	default:
		return socksGeneralFailure
	}
}

// writeRefusal is the single place that tells an HTTP client why it was
// refused.
func writeRefusal(w http.ResponseWriter, r *Refusal) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Tailgate-Refusal", string(r.Reason))
	w.WriteHeader(r.HTTPStatus())
	_, _ = w.Write([]byte(r.Text + "\n"))
}
