package allowlist

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/store/storetest"
	"github.com/tailgate-dev/tailgate/internal/testclock"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

func newService(t *testing.T) (*Service, *testclock.Clock, string) {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	org, err := st.CreateOrg(ctx, "platform")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := vault.NewKeyring(bytes.Repeat([]byte{7}, vault.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	c := testclock.New(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	return &Service{Store: st, Vault: kr, AnnounceAhead: 24 * time.Hour, ReportOrgs: []string{org.ID}, Now: c.Now}, c, org.ID
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestFirstConfigurationIsActiveAtOnceLaterOnesAreAnnouncedAhead(t *testing.T) {
	ctx := context.Background()
	s, c, _ := newService(t)
	if _, err := s.Configure(ctx, addrs("203.0.113.7", "2001:db8::7")); err != nil {
		t.Fatal(err)
	}
	l, _ := s.List(ctx)
	if !slices.Equal(l.IPs, []string{"203.0.113.7", "2001:db8::7"}) || l.AnnounceAheadSeconds != 86400 {
		t.Fatalf("first list = %+v", l)
	}
	// The same configuration again changes nothing.
	if ch, err := s.Configure(ctx, addrs("2001:db8::7", "203.0.113.7")); err != nil || len(ch) != 0 {
		t.Fatalf("same configuration: %+v, %v", ch, err)
	}
	c.Advance(time.Hour)
	start := c.Now()
	// A new address is announced, not used; a dropped one retires.
	if _, err := s.Configure(ctx, addrs("203.0.113.7", "198.51.100.9")); err != nil {
		t.Fatal(err)
	}
	l, _ = s.List(ctx)
	if !slices.Equal(l.IPs, []string{"203.0.113.7", "2001:db8::7"}) {
		t.Errorf("in use right after the change = %v; the new address must wait, the old one stay", l.IPs)
	}
	states := map[string]Entry{}
	for _, e := range l.Entries {
		states[e.IP] = e
	}
	if e := states["198.51.100.9"]; e.State != Announced || !e.ActiveAt.Equal(start.Add(24*time.Hour)) {
		t.Errorf("new address = %+v, want announced, active at %s", e, start.Add(24*time.Hour))
	}
	if e := states["2001:db8::7"]; e.State != Retiring || e.RemovedAt == nil || !e.RemovedAt.Equal(start.Add(24*time.Hour)) {
		t.Errorf("dropped address = %+v, want retiring until %s", e, start.Add(24*time.Hour))
	}
	c.Advance(24*time.Hour - time.Millisecond)
	if l, _ = s.List(ctx); len(l.IPs) != 2 {
		t.Errorf("a moment before the changes take effect: %v", l.IPs)
	}
	c.Advance(time.Millisecond)
	l, _ = s.List(ctx)
	if !slices.Equal(l.IPs, []string{"198.51.100.9", "203.0.113.7"}) || len(l.Entries) != 2 {
		t.Errorf("after the changes take effect: %+v", l)
	}
}

func TestChangeFeedOrdersAddsAndRetirementsWithCursors(t *testing.T) {
	ctx := context.Background()
	s, c, org := newService(t)
	s.Configure(ctx, addrs("203.0.113.1"))
	c.Advance(time.Minute)
	if _, err := s.Report(ctx, org, "runner-1", addrs("198.51.100.1", "198.51.100.2")); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if _, err := s.Retire(ctx, org, netip.MustParseAddr("198.51.100.1")); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	s.Configure(ctx, addrs()) // retire the configured one
	all, err := s.Changes(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		ip     string
		change store.EgressChangeKind
		ahead  time.Duration
	}
	var got []row
	for _, ch := range all.Changes {
		got = append(got, row{ch.IP, ch.Change, ch.EffectiveAt.Sub(ch.AnnouncedAt)})
	}
	want := []row{
		{"203.0.113.1", store.EgressAdd, 0}, // the first configuration
		{"198.51.100.1", store.EgressAdd, 24 * time.Hour},
		{"198.51.100.2", store.EgressAdd, 24 * time.Hour},
		{"198.51.100.1", store.EgressRetire, 24 * time.Hour},
		{"203.0.113.1", store.EgressRetire, 24 * time.Hour},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("feed = %+v\nwant %+v", got, want)
	}
	if all.More || all.Cursor != all.Changes[4].Cursor {
		t.Errorf("whole feed: more=%v cursor=%s", all.More, all.Cursor)
	}
	// Pages of two, following the cursors, give the same feed.
	paged, err := ReadFeed("0", 7, func(since string) (ChangePage, error) { return s.Changes(ctx, since, 2) })
	if err != nil {
		t.Fatal(err)
	}
	if paged.More {
		t.Fatal("pagination does not end")
	}
	since := paged.Cursor
	if !slices.Equal(paged.Changes, all.Changes) {
		t.Errorf("paged feed = %+v\nwant %+v", paged.Changes, all.Changes)
	}
	// Caught up: an empty page keeps the cursor.
	p, _ := s.Changes(ctx, since, 0)
	if len(p.Changes) != 0 || p.Cursor != since || p.More {
		t.Errorf("caught-up page = %+v", p)
	}
	// The allowlist's cursor is the feed's end.
	if l, _ := s.List(ctx); l.Cursor != since {
		t.Errorf("list cursor = %s, feed end %s", l.Cursor, since)
	}
	for _, bad := range []string{"-1", "abc", "01", "1.0", " 1", "99", "9223372036854775808"} {
		_, err := s.Changes(ctx, bad, 0)
		var be *BadInputError
		if !errors.As(err, &be) || !strings.Contains(be.Msg, "since") {
			t.Errorf("since=%q: %v, want a bad-input error about since", bad, err)
		}
	}
	for _, bad := range []int{-1, MaxPageSize + 1} {
		if _, err := s.Changes(ctx, "0", bad); err == nil {
			t.Errorf("limit %d accepted", bad)
		}
	}
}

func TestReportsAreAnnouncedAheadAndOnlyFromThePlatformsOrgs(t *testing.T) {
	ctx := context.Background()
	s, c, org := newService(t)
	s.Configure(ctx, addrs("203.0.113.1"))
	got, err := s.Report(ctx, org, "runner-1", addrs("198.51.100.1", "203.0.113.1"))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].State != Announced || !got[0].ActiveAt.Equal(c.Now().Add(24*time.Hour)) {
		t.Errorf("reported address = %+v: the host must learn when it may use it", got[0])
	}
	if got[1].State != Active {
		t.Errorf("already configured address = %+v", got[1])
	}
	if _, err := s.Report(ctx, "org_tenant", "evil", addrs("198.51.100.66")); !errors.Is(err, ErrNotReporter) {
		t.Errorf("a tenant's report: %v", err)
	}
	if _, err := s.Retire(ctx, "org_tenant", netip.MustParseAddr("198.51.100.1")); !errors.Is(err, ErrNotReporter) {
		t.Errorf("a tenant's retire: %v", err)
	}
	if _, err := s.Retire(ctx, org, netip.MustParseAddr("203.0.113.1")); !errors.Is(err, ErrConfigured) {
		t.Errorf("retiring a configured address: %v", err)
	}
	if _, err := s.Retire(ctx, org, netip.MustParseAddr("198.51.100.200")); !errors.Is(err, ErrNotListed) {
		t.Errorf("retiring an unlisted address: %v", err)
	}
	// Re-reporting a retiring address keeps it, without a new wait.
	c.Advance(48 * time.Hour)
	s.Retire(ctx, org, netip.MustParseAddr("198.51.100.1"))
	c.Advance(time.Hour)
	got, _ = s.Report(ctx, org, "runner-1", addrs("198.51.100.1"))
	if got[0].State != Active || got[0].RemovedAt != nil {
		t.Errorf("re-reported retiring address = %+v, want active and no removal", got[0])
	}
}

func TestParsePublicIPRefusesWhatCannotBeAPublicSource(t *testing.T) {
	for _, ok := range []string{"203.0.113.7", "2001:db8::7", "8.8.8.8", "2606:4700::1111"} {
		if _, err := ParsePublicIP(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for in, why := range map[string]string{
		"127.0.0.1":       "loopback",
		"::1":             "loopback",
		"10.1.2.3":        "private",
		"192.168.1.1":     "private",
		"172.16.0.1":      "private",
		"fd00::1":         "private",
		"169.254.169.254": "link-local",
		"fe80::1":         "link-local",
		"fe80::1%eth0":    "zone",
		"100.64.0.1":      "CGNAT",
		"0.0.0.0":         "unspecified",
		"224.0.0.1":       "multicast",
		"::ffff:8.8.8.8":  "write it as 8.8.8.8",
		"8.8.8.8/32":      "not an IP address",
		" 8.8.8.8":        "not an IP address",
		"example.com":     "not an IP address",
		"":                "not an IP address",
		"1.2.3":           "not an IP address",
		"255.255.255.255": "broadcast",
		"240.0.0.1":       "reserved",
	} {
		_, err := ParsePublicIP(in)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("ParsePublicIP(%q) = %v, want an error saying %q", in, err, why)
		}
	}
	if _, err := ParseIPList("203.0.113.7, 203.0.113.7"); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate: %v", err)
	}
	if ips, err := ParseIPList("203.0.113.7, 2001:db8::7\n198.51.100.1"); err != nil || len(ips) != 3 {
		t.Errorf("list: %v %v", ips, err)
	}
}
