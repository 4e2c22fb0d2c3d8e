package outbound

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func mustPrefixes(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	p, err := ParsePrefixes(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMetadataAndLinkLocalAreRefusedWhateverTheOperatorAllows(t *testing.T) {
	p := &Policy{Allow: mustPrefixes(t, "0.0.0.0/0,::/0,169.254.169.254")}
	for _, a := range []string{
		"169.254.169.254", "169.254.170.2", "fd00:ec2::254", "fd20:ce::254", "100.100.100.200",
		"192.0.0.192", "fe80::1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1",
		"0.0.0.0", "::", "224.0.0.1", "255.255.255.255",
	} {
		err := p.Check(netip.MustParseAddr(a))
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Errorf("%s: allowed, want refused", a)
		}
	}
}

func TestLoopbackAndPrivateAreRefusedUnlessAllowed(t *testing.T) {
	nonPublic := []string{"127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "fd7a:115c:a1e0::1", "100.64.0.1", "192.0.2.10", "::ffff:127.0.0.1", "64:ff9b::7f00:1"}
	var def Policy
	for _, a := range nonPublic {
		err := def.Check(netip.MustParseAddr(a))
		if err == nil || !strings.Contains(err.Error(), "--outbound-allow") {
			t.Errorf("default policy: %s = %v, want refused with a hint", a, err)
		}
	}
	for _, a := range []string{"8.8.8.8", "2606:4700::1111", "1.1.1.1"} {
		if err := def.Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("default policy refuses public %s: %v", a, err)
		}
	}
	lo := AllowLoopback()
	for _, a := range []string{"127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"} {
		if err := lo.Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("AllowLoopback refuses %s: %v", a, err)
		}
	}
	if lo.Check(netip.MustParseAddr("10.0.0.1")) == nil {
		t.Error("AllowLoopback allows private 10.0.0.1")
	}
}

func TestOperatorRangesMostSpecificWinsAndDenyWinsATie(t *testing.T) {
	p := &Policy{
		Allow: mustPrefixes(t, "10.0.0.0/8,203.0.113.0/24"),
		Deny:  mustPrefixes(t, "10.9.0.0/16,0.0.0.0/0,203.0.113.7"),
	}
	for addr, allowed := range map[string]bool{
		"10.1.2.3":    true,  // allow /8
		"10.9.1.1":    false, // deny /16 inside allow /8
		"203.0.113.5": true,  // allowlist: allow /24 beats deny /0
		"203.0.113.7": false, // deny /32
		"8.8.8.8":     false, // deny 0.0.0.0/0
		"192.168.1.1": false, // deny /0, and private
	} {
		if got := p.Check(netip.MustParseAddr(addr)) == nil; got != allowed {
			t.Errorf("%s: allowed = %v, want %v", addr, got, allowed)
		}
	}
	tie := &Policy{Allow: mustPrefixes(t, "10.0.0.0/8"), Deny: mustPrefixes(t, "10.0.0.0/8")}
	if tie.Check(netip.MustParseAddr("10.0.0.1")) == nil {
		t.Error("a tie between Allow and Deny allowed")
	}
}

func TestParsePrefixes(t *testing.T) {
	got := mustPrefixes(t, " 127.0.0.0/8, ::1 ,10.1.2.3/8,")
	want := []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("%d: %s, want %s", i, got[i], want[i])
		}
	}
	if _, err := ParsePrefixes("127.0.0.0/8,localhost"); err == nil {
		t.Error("a name was accepted as a range")
	}
}

// countingServer counts the connections it accepts and the requests it
// serves.
func countingServer(t *testing.T, addr string, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("listen %s: %v", addr, err)
		}
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func TestARefusedAddressIsNeverConnectedTo(t *testing.T) {
	srv, conns := countingServer(t, "", func(w http.ResponseWriter, r *http.Request) {})
	var def Policy
	_, err := def.Client(5 * time.Second).Get(srv.URL)
	var re *RefusedError
	if !errors.As(err, &re) || re.Addr != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("Get loopback with the default policy: %v, want a RefusedError", err)
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the refused address got %d connections", n)
	}

	// The metadata address is refused before a socket connects: the call
	// returns at once instead of timing out on an unroutable address.
	start := time.Now()
	_, err = AllowLoopback().Client(5 * time.Second).Get("http://169.254.169.254/latest/meta-data/")
	if !errors.As(err, &re) || !strings.Contains(re.Error(), "link-local") {
		t.Fatalf("Get metadata: %v, want a RefusedError", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing the metadata address took %v", d)
	}
}

func TestRedirectsAreNeverFollowed(t *testing.T) {
	other, otherConns := countingServer(t, "127.0.0.2:0", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the other host got %s %s (Authorization %q)", r.Method, r.URL, r.Header.Get("Authorization"))
	})
	var hits atomic.Int32
	srv, _ := countingServer(t, "", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/landing", http.StatusFound)
		case "/other":
			http.Redirect(w, r, other.URL+"/landing", http.StatusTemporaryRedirect)
		default:
			t.Errorf("redirect followed to %s (Authorization %q)", r.URL.Path, r.Header.Get("Authorization"))
		}
	})
	hc := AllowLoopback().Client(5 * time.Second)
	for _, path := range []string{"/same", "/other"} {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer hskey-api-SECRET")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
		if !IsRedirect(resp.StatusCode) {
			t.Errorf("%s: status %d, want the redirect itself", path, resp.StatusCode)
		}
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("the server got %d requests, want 2 (no redirect followed)", n)
	}
	if n := otherConns.Load(); n != 0 {
		t.Errorf("the other host got %d connections", n)
	}
}

func TestCheckURL(t *testing.T) {
	ctx := context.Background()
	var def Policy
	for _, u := range []string{"http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://127.0.0.1:8080", "http://localhost:8080", "https://10.0.0.1"} {
		if err := def.CheckURL(ctx, u); err == nil {
			t.Errorf("CheckURL(%s) allowed", u)
		}
	}
	if err := AllowLoopback().CheckURL(ctx, "http://localhost:8080"); err != nil {
		t.Errorf("CheckURL(localhost) with loopback allowed: %v", err)
	}
	if err := def.CheckURL(ctx, "http://1.1.1.1/"); err != nil {
		t.Errorf("CheckURL(public) refused: %v", err)
	}
}
