package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/allowlist"
	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/store/storetest"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

// allowlistServer is an API with a Network Allowlist of two configured
// addresses, one of them since retired and one announced.
func allowlistServer(t *testing.T, needsToken bool) (*httptest.Server, *store.Store) {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	kr, _ := vault.NewKeyring(bytes.Repeat([]byte{7}, vault.KeySize))
	al := &allowlist.Service{Store: st, Vault: kr, AnnounceAhead: 24 * time.Hour}
	for _, ips := range [][]string{{"203.0.113.7", "2001:db8::7"}, {"203.0.113.7", "198.51.100.9"}} {
		var addrs []netip.Addr
		for _, ip := range ips {
			addrs = append(addrs, netip.MustParseAddr(ip))
		}
		if _, err := al.Configure(ctx, addrs); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(api.New(api.Options{Store: st, Allowlist: al, AllowlistNeedsToken: needsToken}))
	t.Cleanup(srv.Close)
	return srv, st
}

func runNetworkCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(context.Background(), append([]string{"network"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestNetworkAllowlistPrintsTheListAndFollowsTheFeed(t *testing.T) {
	t.Setenv("TAILGATE_TOKEN", "")
	srv, _ := allowlistServer(t, false)
	code, out, errs := runNetworkCLI(t, "allowlist", "--server", srv.URL)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"203.0.113.7", "active", "198.51.100.9", "announced", "2001:db8::7", "retiring", "announced 24h0m0s ahead", "--changes 4"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runNetworkCLI(t, "allowlist", "--server", srv.URL, "--json")
	var l allowlist.List
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || len(l.IPs) != 2 || len(l.Entries) != 3 {
		t.Errorf("--json: exit %d: %s", code, out)
	}
	code, out, _ = runNetworkCLI(t, "allowlist", "--server", srv.URL, "--changes", "1")
	if code != 0 || strings.Count(out, "198.51.100.9") != 1 || !strings.Contains(out, "retire") || strings.Contains(out, "\n1 ") || !strings.Contains(out, "--changes 4") {
		t.Errorf("--changes 1:\n%s", out)
	}
	code, out, _ = runNetworkCLI(t, "allowlist", "--server", srv.URL, "--changes", "0", "--json")
	var p allowlist.ChangePage
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || len(p.Changes) != 4 || p.Cursor != "4" {
		t.Errorf("--changes 0 --json: exit %d: %s", code, out)
	}
}

func TestNetworkAllowlistSendsTheTokenWhenTheServerWantsOne(t *testing.T) {
	srv, st := allowlistServer(t, true)
	t.Setenv("TAILGATE_TOKEN", "")
	if code, _, errs := runNetworkCLI(t, "allowlist", "--server", srv.URL); code != 1 || !strings.Contains(errs, "unauthenticated") {
		t.Errorf("without a token: exit %d: %s", code, errs)
	}
	org, _ := st.CreateOrg(context.Background(), "Acme")
	tok, _, _ := st.CreateAPIToken(context.Background(), org.ID, "ci", store.RoleRunner)
	t.Setenv("TAILGATE_TOKEN", tok)
	if code, out, errs := runNetworkCLI(t, "allowlist", "--server", srv.URL); code != 0 || !strings.Contains(out, "203.0.113.7") {
		t.Errorf("with a token: exit %d: %s %s", code, out, errs)
	}
}

func TestNetworkAllowlistRefusesMisuse(t *testing.T) {
	srv, _ := allowlistServer(t, false)
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"list"}, `unknown network command "list"`},
		{[]string{"allowlist", "extra", "--server", srv.URL}, "takes no arguments"},
		{[]string{"allowlist", "--changes", "abc", "--server", srv.URL}, "--changes must be a cursor"},
		{[]string{"allowlist", "--changes", "", "--server", srv.URL}, "--changes must be a cursor"},
		{[]string{"allowlist", "--changes", "-1", "--server", srv.URL}, "--changes must be a cursor"},
		{[]string{"allowlist", "--server", "ftp://x"}, "--server must be an http(s) URL"},
		{[]string{"allowlist", "--bogus"}, "flag provided but not defined"},
	} {
		code, _, errs := runNetworkCLI(t, c.args...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errs, c.want)
		}
	}
	// A cursor the server never issued: the server's 400, worded.
	code, _, errs := runNetworkCLI(t, "allowlist", "--changes", "99", "--server", srv.URL)
	if code != 1 || !strings.Contains(errs, "beyond this feed's newest change") || !strings.Contains(errs, "bad_input") {
		t.Errorf("--changes 99: exit %d: %s", code, errs)
	}
}

func TestServeRefusesBadAllowlistFlags(t *testing.T) {
	dir := t.TempDir()
	ipsFile := filepath.Join(dir, "ips.txt")
	os.WriteFile(ipsFile, []byte("# egress\n203.0.113.7\n10.0.0.1 # oops\n"), 0o600)
	twoPerLine := filepath.Join(dir, "two.txt")
	os.WriteFile(twoPerLine, []byte("203.0.113.7 203.0.113.8\n"), 0o600)
	for _, c := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--egress-ips", "127.0.0.1"}, "", "--egress-ips: 127.0.0.1 is loopback"},
		{[]string{"--egress-ips", "203.0.113.7,192.168.1.1"}, "", "--egress-ips: 192.168.1.1 is private"},
		{[]string{"--egress-ips", "fe80::1"}, "", "link-local"},
		{[]string{"--egress-ips", "203.0.113.0/24"}, "", "is not an IP address"},
		{[]string{"--egress-ips", "203.0.113.7,203.0.113.7"}, "", "listed twice"},
		{[]string{"--egress-ips", ","}, "", "lists no address"},
		{[]string{"--egress-ips", "203.0.113.7", "--egress-ips-file", ipsFile}, "", "not both"},
		{[]string{"--egress-ips-file", ipsFile}, "", "10.0.0.1 is private"},
		{[]string{"--egress-ips-file", twoPerLine}, "", "one address per line"},
		{[]string{"--egress-ips-file", filepath.Join(dir, "missing.txt")}, "", "missing.txt"},
		{[]string{"--egress-announce-ahead", "-1h"}, "", "--egress-announce-ahead must be from 0"},
		{[]string{"--egress-announce-ahead", "2160h1s"}, "", "--egress-announce-ahead must be from 0"},
		{[]string{"--egress-announce-ahead", "soon"}, "", "invalid value"},
		{nil, "TAILGATE_EGRESS_ANNOUNCE_AHEAD=soon", "TAILGATE_EGRESS_ANNOUNCE_AHEAD=\"soon\" is not a duration"},
		{[]string{"--allowlist-access", "private"}, "", "--allowlist-access must be public or token"},
		{nil, "TAILGATE_EGRESS_IPS=::1", "--egress-ips: ::1 is loopback"},
	} {
		if c.env != "" {
			k, v, _ := strings.Cut(c.env, "=")
			t.Setenv(k, v)
		}
		var out, errb bytes.Buffer
		args := append([]string{"serve", "--db", filepath.Join(dir, "never.db"), "--key-file", filepath.Join(dir, "never.key")}, c.args...)
		code := runMain(context.Background(), args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v %s: exit %d, stderr %q; want 2 and %q", c.args, c.env, code, errb.String(), c.want)
		}
		if c.env != "" {
			k, _, _ := strings.Cut(c.env, "=")
			os.Unsetenv(k)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "never.db")); err == nil {
		t.Error("a refused flag still created the database")
	}
	// An unknown reporting org is found only once the store is open.
	var out, errb bytes.Buffer
	code := runMain(context.Background(), []string{"serve", "--db", filepath.Join(dir, "orgs.db"), "--key-file", filepath.Join(dir, "orgs.key"),
		"--egress-report-orgs", "default,platform"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), `--egress-report-orgs: no org "platform"`) {
		t.Errorf("unknown org: exit %d: %s", code, errb.String())
	}
}
