package browser_test

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/browser"
	"github.com/tailgate-dev/tailgate/internal/egress"
)

func TestAttributeSortsProxyEventsByCause(t *testing.T) {
	requests := []browser.Request{
		{Host: "App.Internal.Example.", Port: 80},
		{Host: "example.com", Port: 443}, // a page asked: refused, but the page's
		{Host: "[fd7a:115c:a1e0::1]", Port: 8080},
	}
	refused := func(host string, port uint16, p egress.Protocol) egress.Event {
		return egress.Event{Host: host, Port: port, Protocol: p, Refused: true, Reason: egress.ReasonNotATarget}
	}
	events := []egress.Event{
		{Host: "app.internal.example", Port: 80, Protocol: egress.ProtocolHTTP, Resolved: netip.MustParseAddr("100.64.0.5")},
		refused("example.com", 443, egress.ProtocolConnect),
		{Host: "fd7a:115c:a1e0::1", Port: 8080, Protocol: egress.ProtocolConnect, Resolved: netip.MustParseAddr("fd7a:115c:a1e0::1")},
		refused("update.googleapis.com", 443, egress.ProtocolConnect),
		refused("update.googleapis.com", 443, egress.ProtocolConnect),
		refused("update.googleapis.com", 80, egress.ProtocolHTTP),
		// No page asked for these, and the proxy got as far as resolving
		// or dialling: unexplained, whatever the outcome.
		{Host: "app.internal.example", Port: 443, Protocol: egress.ProtocolConnect, Resolved: netip.MustParseAddr("100.64.0.5")},
		{Host: "app.internal.example", Port: 8443, Protocol: egress.ProtocolConnect, Resolved: netip.MustParseAddr("100.64.0.5"), Refused: true, Reason: egress.ReasonDialFailed},
	}
	a := browser.Attribute(requests, events)
	if len(a.Background) != 2 {
		t.Fatalf("background %+v; want update.googleapis.com on 443 and on 80", a.Background)
	}
	if b := a.Background[0]; b.Host != "update.googleapis.com" || b.Port != 443 || b.Count != 2 || b.Source != "browser_background" || b.Reason != egress.ReasonNotATarget {
		t.Errorf("background[0] = %+v", b)
	}
	if b := a.Background[1]; b.Port != 80 || b.Count != 1 || b.Protocol != egress.ProtocolHTTP {
		t.Errorf("background[1] = %+v", b)
	}
	if len(a.Unattributed) != 2 || a.Unattributed[0].Port != 443 || a.Unattributed[1].Port != 8443 {
		t.Errorf("unattributed %+v; want the two app.internal.example events no page made", a.Unattributed)
	}
	b, _ := json.Marshal(a)
	if !strings.Contains(string(b), `"browser_background":[{"source":"browser_background","host":"update.googleapis.com"`) {
		t.Errorf("JSON %s", b)
	}

	// Nothing seen: empty lists, not null, so a report says "none".
	b, _ = json.Marshal(browser.Attribute(nil, nil))
	if string(b) != `{"browser_background":[],"unattributed":[]}` {
		t.Errorf("empty attribution JSON %s", b)
	}
}
