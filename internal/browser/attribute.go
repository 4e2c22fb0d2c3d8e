package browser

import (
	"net"
	"strconv"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/egress"
)

// SourceBackground marks a request that no page of the flow made: the
// browser's own services (component updates, sign-in, network time),
// which every Chromium release adds to. Nothing here depends on their
// names: whatever the proxy saw that no page asked for is background.
const SourceBackground = "browser_background"

// BackgroundRequest is one destination the browser reached for on its
// own, with how often and why the proxy refused it. Only requests the
// proxy refused before resolving or dialling anything are background:
// nothing of them left the host.
type BackgroundRequest struct {
	Source   string          `json:"source"` // always SourceBackground
	Host     string          `json:"host"`
	Port     uint16          `json:"port"`
	Protocol egress.Protocol `json:"protocol"`
	Count    int             `json:"count"`
	Reason   egress.Reason   `json:"reason"`
}

// Attribution sorts the run proxy's events by who caused them.
type Attribution struct {
	// Background are refused requests no page made: the browser's own.
	Background []BackgroundRequest `json:"browser_background"`
	// Unattributed are requests the proxy let through (or tried to) that
	// no page made. A quiet, leak-free run has none.
	Unattributed []egress.Event `json:"unattributed"`
}

// Attribute matches the proxy's events to the pages' requests by
// destination (host and port: one tunnel carries many requests). An event
// no page request explains is the browser's own; it is background when
// the proxy refused it unresolved and undialled, and unattributed
// otherwise.
func Attribute(requests []Request, events []egress.Event) Attribution {
	pages := map[string]bool{}
	for _, q := range requests {
		pages[Destination(q.Host, q.Port)] = true
	}
	a := Attribution{Background: []BackgroundRequest{}, Unattributed: []egress.Event{}}
	index := map[string]int{} // destination and protocol → a.Background
	for _, e := range events {
		k := Destination(e.Host, int(e.Port))
		if pages[k] {
			continue
		}
		if !e.Refused || e.Resolved.IsValid() {
			a.Unattributed = append(a.Unattributed, e)
			continue
		}
		k += "/" + string(e.Protocol)
		i, ok := index[k]
		if !ok {
			i = len(a.Background)
			index[k] = i
			a.Background = append(a.Background, BackgroundRequest{Source: SourceBackground, Host: e.Host, Port: e.Port, Protocol: e.Protocol, Reason: e.Reason})
		}
		a.Background[i].Count++
	}
	return a
}

// Destination canonicalizes a request's host and port as the run proxy
// records them (lowercase, no brackets, no trailing dot), so a page's
// request and the proxy's event for it compare equal.
func Destination(host string, port int) string {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	return net.JoinHostPort(host, strconv.Itoa(port))
}
