package egress

import (
	"net/netip"
	"time"
)

// Protocol is how a client asked the proxy for a connection.
type Protocol string

const (
	ProtocolHTTP    Protocol = "http"    // absolute-URI forwarding
	ProtocolConnect Protocol = "connect" // HTTP CONNECT tunnel
	ProtocolSOCKS5  Protocol = "socks5"  // SOCKS5 CONNECT tunnel
)

// Event is the diagnostics of one proxied request or tunnel, allowed or
// refused. Runs keep them for the run report.
type Event struct {
	Time     time.Time `json:"time"`
	Protocol Protocol  `json:"protocol"`
	// Host and Port are what the client asked for (host canonicalized:
	// lowercase, no trailing dot).
	Host string `json:"host"`
	Port uint16 `json:"port"`
	// Resolved is the tailnet address dialled (or the first one tried when
	// the dial failed); zero when the request was refused before resolving.
	Resolved netip.Addr `json:"resolved,omitzero"`
	// Method and Status are set for HTTP forwarding and HTTP refusals.
	Method string `json:"method,omitempty"`
	Status int    `json:"status,omitempty"`
	// BytesUp is client→target payload, BytesDown target→client (bodies for
	// forwarded HTTP, tunnel bytes for CONNECT and SOCKS5).
	BytesUp   int64         `json:"bytes_up"`
	BytesDown int64         `json:"bytes_down"`
	Duration  time.Duration `json:"duration_ns"`
	Refused   bool          `json:"refused"`
	// Reason and ReasonText say why a request was refused.
	Reason     Reason `json:"reason,omitempty"`
	ReasonText string `json:"reason_text,omitempty"`
	// Error is set when an allowed request failed after connecting (for
	// example the target reset the connection mid-response).
	Error string `json:"error,omitempty"`
}

// Events returns a copy of every event recorded so far, oldest first.
func (p *Proxy) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// record finishes an event and keeps it.
func (p *Proxy) record(ev Event, ref *Refusal) {
	ev.Duration = time.Since(ev.Time)
	if ref != nil {
		ev.Refused = true
		ev.Reason = ref.Reason
		ev.ReasonText = ref.Text
	}
	p.mu.Lock()
	p.events = append(p.events, ev)
	p.mu.Unlock()
	if ev.Refused {
		p.log.Info("egress refused", "protocol", ev.Protocol, "host", ev.Host, "port", ev.Port,
			"reason", ev.Reason, "text", ev.ReasonText)
	} else {
		p.log.Debug("egress request", "protocol", ev.Protocol, "host", ev.Host, "port", ev.Port,
			"resolved", ev.Resolved, "up", ev.BytesUp, "down", ev.BytesDown, "duration", ev.Duration, "err", ev.Error)
	}
	if p.onEvent != nil {
		p.onEvent(ev)
	}
}
