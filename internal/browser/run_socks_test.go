package browser_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/egress"
)

func TestFlowRunsThroughSOCKS5(t *testing.T) {
	b := newBrowserRun(t)
	b.opts.ProxyURL = strings.Replace(b.opts.ProxyURL, "http://", "socks5://", 1)
	rep, err := runFlow(t, b, mustParse(t, "steps:\n  - goto: http://app.internal.example/\n  - expect_text: Hello from the private app\n"))
	if err != nil {
		t.Fatalf("flow over SOCKS5: %v (%+v)", err, rep)
	}
	if !slices.Contains(b.tailnet.Lookups(), "app.internal.example") {
		t.Errorf("tailnet lookups = %v; Chromium must send the name, not resolve it", b.tailnet.Lookups())
	}
	for _, ev := range b.proxy.Events() {
		if ev.Protocol != egress.ProtocolSOCKS5 {
			t.Errorf("event %+v; want every request over SOCKS5", ev)
		}
	}
	checkAttributed(t, b, rep)
}
