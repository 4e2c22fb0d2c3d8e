package probe_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/testtcp"

	"github.com/tailgate-dev/tailgate/internal/probe"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
	"github.com/tailgate-dev/tailgate/internal/target"
)

// loopbackNode stands in for a tailnet node: names resolve from a table,
// 192.0.2.x:port dials 127.0.0.1:port, and 198.51.100.x has no route.
type loopbackNode struct{ names map[string]netip.Addr }

func (n loopbackNode) LookupNetIP(_ context.Context, host string) ([]netip.Addr, error) {
	if a, ok := n.names[host]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, tailnet.ErrNameNotInTailnet
}

func (n loopbackNode) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	if netip.MustParsePrefix("198.51.100.0/24").Contains(dst.Addr()) {
		return nil, &tailnet.NotRoutedError{Addr: dst.Addr()}
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), dst.Port()).String())
}

func (loopbackNode) WarmPath(context.Context, netip.Addr) error { return nil }

func port(s *httptest.Server) string {
	_, p, _ := net.SplitHostPort(s.Listener.Addr().String())
	return p
}

func TestCheckGivesEachStepAVerdict(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer tlsSrv.Close()
	closedPort := testtcp.FreePort(t) // nothing listens there

	node := loopbackNode{names: map[string]netip.Addr{"app.internal.example": netip.MustParseAddr("192.0.2.10")}}
	for _, tc := range []struct {
		target  string
		ok      bool
		verdict string
		hint    string
	}{
		{"app.internal.example:" + port(plain), true, probe.VerdictReachable, ""},
		{"192.0.2.10:" + port(plain), true, probe.VerdictReachable, ""},
		// httptest's certificate is for example.com and 127.0.0.1, not
		// this name.
		{"app.internal.example:" + port(tlsSrv), false, probe.VerdictTLSMismatch, "target a name on the certificate"},
		{"nowhere.internal.example:443", false, probe.VerdictNameNotFound, "split DNS"},
		{"198.51.100.10:80", false, probe.VerdictNotRouted, "approve the subnet router's route"},
		{"192.0.2.10:" + strconv.Itoa(closedPort), false, probe.VerdictRefused, "nothing listens on port"},
	} {
		tg, err := target.Parse(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		r := probe.Check(context.Background(), node, tg)
		if r.OK != tc.ok || r.Verdict != tc.verdict || !strings.Contains(r.Hint, tc.hint) {
			t.Errorf("%s: ok %v verdict %q hint %q; want %v %q ~%q (steps %+v)", tc.target, r.OK, r.Verdict, r.Hint, tc.ok, tc.verdict, tc.hint, r.Steps)
		}
	}
}
