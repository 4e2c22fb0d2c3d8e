// Package allowlist publishes the Network Allowlist: the public egress
// addresses of the platform's runners, for customers whose firewall only
// needs source IPs (the simpler alternative to private network access).
//
// # Overview
//
// Addresses come from two places: the server's configuration (serve's
// --egress-ips or --egress-ips-file, reconciled by [Service.Configure] at
// start) and runner hosts, which report their public addresses when they
// register ([Service.Report], POST /v1/network/egress) and retire them
// ([Service.Retire]) when they are decommissioned.
//
// Nothing takes effect the moment it is decided. Every change is first
// announced on a change feed ([Service.Changes]) with the time it takes
// effect, AnnounceAhead later:
//
//   - an added address is listed at once as "announced" with its
//     active_at, and only joins the list of addresses in use (List.IPs)
//     at that time; a runner host that reports an address learns the
//     time too and takes runs from it only then;
//   - a retired address stays in use-list as "retiring" with its
//     removed_at, and leaves the list at that time.
//
// A firewall that allows every address in List.Entries (or applies the
// feed as it comes) is therefore never behind: it learns of a new
// address a whole AnnounceAhead before any traffic comes from it, and
// keeps an old one until no traffic can. The very first addresses
// configured on an empty allowlist are active at once: nobody could have
// been told earlier.
//
// Each org may also have one webhook ([Service.SetWebhook]): the feed's
// changes are POSTed to it as they are announced, signed with
// HMAC-SHA256 ([Sign], [VerifySignature]), retried with exponential
// backoff until the receiver answers 2xx, through the operator's
// outbound policy (package outbound: no loopback or private receivers
// unless allowed, redirects never followed). What a receiver answers is
// never stored or repeated; a failure is described in tailgate's words.
//
// Policy lives here; package store keeps the rows. The feed is durable,
// so deliveries resume after a restart; with several replicas a batch may
// be delivered twice (at least once): receivers dedupe by cursor.
//
// # Usage
//
//	al := &allowlist.Service{Store: st, Vault: keyring, AnnounceAhead: 24 * time.Hour}
//	_, err := al.Configure(ctx, ips)       // at start, from --egress-ips
//	list, err := al.List(ctx)              // GET /v1/network/allowlist
//	page, err := al.Changes(ctx, since, 0) // GET /v1/network/allowlist/changes?since=
//	go al.RunDeliveries(ctx, 5*time.Second)
package allowlist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/periodic"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

// Service is the Network Allowlist over a store. Store is required;
// Vault is needed for webhooks. Fields are not changed after first use.
type Service struct {
	Store *store.Store
	// Vault seals each webhook's signing secret. Nil: webhooks cannot be
	// set.
	Vault *vault.Keyring
	// AnnounceAhead is how long a change is announced before it takes
	// effect. Zero: at once (a firewall fed by the list may then lag).
	AnnounceAhead time.Duration
	// Outbound decides where webhooks may be delivered. Nil refuses
	// loopback and private addresses (outbound's zero Policy).
	Outbound *outbound.Policy
	// ReportOrgs are the orgs whose tokens may report and retire runner
	// hosts' addresses: the platform operator's own. A tenant's token
	// must never add an address to every customer's firewall. Empty: no
	// org may.
	ReportOrgs []string
	// RetryMin and RetryMax bound the backoff between failed deliveries
	// (doubling from RetryMin); 10s and 1h when zero.
	RetryMin, RetryMax time.Duration
	// DeliveryTimeout bounds one delivery; 10s when zero.
	DeliveryTimeout time.Duration
	// Logger receives one line per failed delivery (never the receiver's
	// answer). Nil discards.
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	deliverNow periodic.Waker // wakes RunDeliveries after a change; see poke
}

// MaxIPs is the most addresses one report or one configuration may list.
const MaxIPs = 256

// BadInputError is input the allowlist refuses; its message says why in
// words a caller can act on.
type BadInputError struct{ Msg string }

func (e *BadInputError) Error() string { return e.Msg }

func badInput(format string, args ...any) error {
	return &BadInputError{Msg: fmt.Sprintf(format, args...)}
}

// ErrNotListed: the address is not on the allowlist.
var ErrNotListed = errors.New("not on the allowlist")

// ErrConfigured: the address comes from the server's configuration and
// is retired there, not through the API.
var ErrConfigured = errors.New("listed by the server's configuration")

// ErrNotReporter: the org may not report egress addresses.
var ErrNotReporter = errors.New("not an egress reporter")

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC().Truncate(time.Millisecond)
	}
	return time.Now().UTC().Truncate(time.Millisecond)
}

// State is where an address stands at a moment.
type State string

const (
	// Announced: listed, not yet in use (before its active_at).
	Announced State = "announced"
	// Active: in use.
	Active State = "active"
	// Retiring: still in use until its removed_at.
	Retiring State = "retiring"
	// Removed: no longer listed.
	Removed State = "removed"
)

// stateAt is where e stands at now.
func stateAt(e store.EgressIP, now time.Time) State {
	switch {
	case !e.RemovedAt.IsZero() && !now.Before(e.RemovedAt):
		return Removed
	case now.Before(e.ActiveAt):
		return Announced
	case !e.RetiredAt.IsZero():
		return Retiring
	}
	return Active
}

// List is the answer of GET /v1/network/allowlist.
type List struct {
	// IPs are the addresses in use now (active or retiring), sorted.
	IPs []string `json:"ips"`
	// Entries are every listed address, announced ones included, with
	// when each joins or leaves the list. A firewall that allows all of
	// them is never behind.
	Entries []Entry `json:"entries"`
	// AnnounceAheadSeconds is how long each change is announced before
	// it takes effect.
	AnnounceAheadSeconds int64 `json:"announce_ahead_seconds"`
	// Cursor is the change feed's newest change: pass it as since= to
	// hear of what changes after this list.
	Cursor string `json:"cursor"`
}

// Entry is one listed address.
type Entry struct {
	IP    string `json:"ip"`
	State State  `json:"state"`
	// ActiveAt is when traffic may (or did first) come from it.
	ActiveAt time.Time `json:"active_at"`
	// RemovedAt is when a retired address leaves the list.
	RemovedAt *time.Time `json:"removed_at,omitempty"`
}

// List returns the allowlist as it stands now.
func (s *Service) List(ctx context.Context) (List, error) {
	ips, err := s.Store.EgressIPs(ctx)
	if err != nil {
		return List{}, err
	}
	latest, err := s.Store.LatestEgressChange(ctx)
	if err != nil {
		return List{}, err
	}
	now := s.now()
	out := List{IPs: []string{}, Entries: []Entry{}, AnnounceAheadSeconds: int64(s.AnnounceAhead / time.Second), Cursor: FormatCursor(latest)}
	for _, e := range sortedByAddr(ips) {
		st := stateAt(e, now)
		if st == Removed {
			continue
		}
		en := Entry{IP: e.IP.String(), State: st, ActiveAt: e.ActiveAt}
		if !e.RemovedAt.IsZero() {
			t := e.RemovedAt
			en.RemovedAt = &t
		}
		out.Entries = append(out.Entries, en)
		if st != Announced {
			out.IPs = append(out.IPs, en.IP)
		}
	}
	return out, nil
}

// Configure makes the configured addresses those of the configuration,
// ips: each one not listed is announced (active at once if the allowlist
// has never listed anything), each configured one no longer in ips is
// retired. Reported addresses are left alone. It returns the changes
// announced; none when the configuration did not change.
func (s *Service) Configure(ctx context.Context, ips []netip.Addr) ([]store.EgressChange, error) {
	if len(ips) > MaxIPs {
		return nil, badInput("at most %d egress addresses may be configured, not %d", MaxIPs, len(ips))
	}
	now := s.now()
	changes, err := s.Store.EditEgress(ctx, func(cur []store.EgressIP) ([]store.EgressChange, error) {
		return planConfigure(cur, ips, now, s.AnnounceAhead), nil
	})
	s.poke(changes)
	return changes, err
}

// Report lists a runner host's public addresses on behalf of orgID, one
// of ReportOrgs. An address not listed is announced, in use from
// AnnounceAhead on; one already listed is left as it is (a retiring one
// is kept). It returns every reported address's entry: the host takes
// runs from an address only once its ActiveAt has passed.
func (s *Service) Report(ctx context.Context, orgID, host string, ips []netip.Addr) ([]Entry, error) {
	if !s.mayReport(orgID) {
		return nil, ErrNotReporter
	}
	if len(ips) == 0 || len(ips) > MaxIPs {
		return nil, badInput("ips must list 1 to %d public addresses", MaxIPs)
	}
	now := s.now()
	var after []store.EgressIP
	changes, err := s.Store.EditEgress(ctx, func(cur []store.EgressIP) ([]store.EgressChange, error) {
		ch := planReport(cur, ips, orgID, host, now, s.AnnounceAhead)
		after = applied(cur, ch)
		return ch, nil
	})
	if err != nil {
		return nil, err
	}
	s.poke(changes)
	byIP := map[netip.Addr]store.EgressIP{}
	for _, e := range after {
		byIP[e.IP] = e
	}
	out := make([]Entry, 0, len(ips))
	for _, ip := range ips {
		e := byIP[ip]
		en := Entry{IP: ip.String(), State: stateAt(e, now), ActiveAt: e.ActiveAt}
		if !e.RemovedAt.IsZero() {
			t := e.RemovedAt
			en.RemovedAt = &t
		}
		out = append(out, en)
	}
	return out, nil
}

// Retire announces that a reported address leaves the list AnnounceAhead
// from now, on behalf of orgID, one of ReportOrgs. Retiring one already
// retiring changes nothing. A configured address is ErrConfigured; one
// not listed, ErrNotListed.
func (s *Service) Retire(ctx context.Context, orgID string, ip netip.Addr) (Entry, error) {
	if !s.mayReport(orgID) {
		return Entry{}, ErrNotReporter
	}
	now := s.now()
	var after []store.EgressIP
	changes, err := s.Store.EditEgress(ctx, func(cur []store.EgressIP) ([]store.EgressChange, error) {
		ch, err := planRetire(cur, ip, now, s.AnnounceAhead)
		after = applied(cur, ch)
		return ch, err
	})
	if err != nil {
		return Entry{}, err
	}
	s.poke(changes)
	for _, e := range after {
		if e.IP == ip {
			t := e.RemovedAt
			return Entry{IP: ip.String(), State: stateAt(e, now), ActiveAt: e.ActiveAt, RemovedAt: &t}, nil
		}
	}
	return Entry{}, ErrNotListed
}

func (s *Service) mayReport(orgID string) bool {
	for _, o := range s.ReportOrgs {
		if o == orgID {
			return true
		}
	}
	return false
}

// Change is one entry of the change feed, as the API and webhooks send it.
type Change struct {
	// Cursor is this change's place in the feed: since=Cursor answers
	// what follows it.
	Cursor string `json:"cursor"`
	IP     string `json:"ip"`
	// Change is "add" or "retire".
	Change      store.EgressChangeKind `json:"change"`
	AnnouncedAt time.Time              `json:"announced_at"`
	// EffectiveAt is when an added address is first used, or when a
	// retired one leaves the list.
	EffectiveAt time.Time `json:"effective_at"`
}

// ChangePage is one page of the feed: GET /v1/network/allowlist/changes,
// and the body of a webhook delivery.
type ChangePage struct {
	Changes []Change `json:"changes"`
	// Cursor is where the next page starts: the last change's cursor, or
	// since itself when there was nothing new.
	Cursor string `json:"cursor"`
	// More says another page follows at once.
	More bool `json:"more"`
}

// DefaultPageSize and MaxPageSize bound a page of the feed.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// FormatCursor is the cursor of the feed's change number seq; "0" is the
// feed's start.
func FormatCursor(seq int64) string { return strconv.FormatInt(seq, 10) }

// ParseCursor reads a cursor as FormatCursor writes it: a decimal number
// without sign or leading zeros. "" is the start.
func ParseCursor(c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(c, 10, 64)
	if err != nil || n < 0 || FormatCursor(n) != c {
		return 0, badInput("since must be a cursor from this feed (the \"cursor\" of the allowlist or of a change, e.g. since=0 for the start)")
	}
	return n, nil
}

// Changes returns up to limit changes (DefaultPageSize when 0) after the
// cursor since. A cursor beyond the feed's newest change is refused: it
// was not issued here (another server, or a database restored from an
// older backup), and waiting on it would miss changes.
func (s *Service) Changes(ctx context.Context, since string, limit int) (ChangePage, error) {
	after, err := ParseCursor(since)
	if err != nil {
		return ChangePage{}, err
	}
	if limit == 0 {
		limit = DefaultPageSize
	}
	if limit < 1 || limit > MaxPageSize {
		return ChangePage{}, badInput("limit must be 1 to %d", MaxPageSize)
	}
	latest, err := s.Store.LatestEgressChange(ctx)
	if err != nil {
		return ChangePage{}, err
	}
	if after > latest {
		return ChangePage{}, badInput("since=%d is beyond this feed's newest change (%d): it was not issued by this server, or the server's database was restored; fetch the allowlist again and use its cursor", after, latest)
	}
	return s.page(ctx, after, limit)
}

// ReadFeed reads the feed from since to its end, following the cursors
// one page at a time through page (a Service's Changes, or a GET of
// /v1/network/allowlist/changes), for at most maxPages pages: a feed
// still not at its end then is answered with More set.
func ReadFeed(since string, maxPages int, page func(since string) (ChangePage, error)) (ChangePage, error) {
	all := ChangePage{Changes: []Change{}, Cursor: since}
	for range maxPages {
		p, err := page(all.Cursor)
		if err != nil {
			return all, err
		}
		all.Changes = append(all.Changes, p.Changes...)
		all.Cursor, all.More = p.Cursor, p.More
		if !p.More {
			break
		}
	}
	return all, nil
}

func (s *Service) page(ctx context.Context, after int64, limit int) (ChangePage, error) {
	rows, err := s.Store.EgressChanges(ctx, after, limit+1)
	if err != nil {
		return ChangePage{}, err
	}
	p := ChangePage{Changes: []Change{}, Cursor: FormatCursor(after)}
	if len(rows) > limit {
		rows, p.More = rows[:limit], true
	}
	for _, c := range rows {
		p.Changes = append(p.Changes, Change{Cursor: FormatCursor(c.Seq), IP: c.IP.String(), Change: c.Kind, AnnouncedAt: c.AnnouncedAt, EffectiveAt: c.EffectiveAt})
		p.Cursor = FormatCursor(c.Seq)
	}
	return p, nil
}

// poke wakes the delivery loop after changes were announced.
func (s *Service) poke(changes []store.EgressChange) {
	if len(changes) == 0 {
		return
	}
	s.deliverNow.Wake()
}
