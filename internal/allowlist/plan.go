package allowlist

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/tailgate-dev/tailgate/internal/store"
)

// The plans decide what changes; they read the current rows and never
// write (the store applies what they return, in one transaction).

// planConfigure announces the configured addresses that are not listed
// and retires the configured ones no longer configured. On an allowlist
// that has never listed anything, the adds are active at once.
func planConfigure(cur []store.EgressIP, want []netip.Addr, now time.Time, ahead time.Duration) []store.EgressChange {
	byIP := index(cur)
	effective := now.Add(ahead)
	if len(cur) == 0 {
		effective = now
	}
	out, wanted := planAdds(byIP, want, store.EgressConfig, "", "", now, effective)
	for _, e := range sortedByAddr(cur) {
		if e.Source != store.EgressConfig || wanted[e.IP] || !e.RetiredAt.IsZero() {
			continue
		}
		out = append(out, store.EgressChange{IP: e.IP, Kind: store.EgressRetire, Source: e.Source, AnnouncedAt: now, EffectiveAt: now.Add(ahead)})
	}
	return out
}

// planReport announces the reported addresses that are not listed.
func planReport(cur []store.EgressIP, ips []netip.Addr, orgID, host string, now time.Time, ahead time.Duration) []store.EgressChange {
	out, _ := planAdds(index(cur), ips, store.EgressReported, orgID, host, now, now.Add(ahead))
	return out
}

// planAdds is planAdd for each of ips, once for an address listed twice;
// it also returns the set of the addresses.
func planAdds(byIP map[netip.Addr]store.EgressIP, ips []netip.Addr, src store.EgressSource, orgID, host string, now, effective time.Time) ([]store.EgressChange, map[netip.Addr]bool) {
	seen := map[netip.Addr]bool{}
	var out []store.EgressChange
	for _, ip := range ips {
		if seen[ip] {
			continue
		}
		seen[ip] = true
		if c, ok := planAdd(byIP, ip, src, orgID, host, now, effective); ok {
			out = append(out, c)
		}
	}
	return out, seen
}

// planAdd is the change that lists ip, if it needs one: none while it is
// listed for good; for one that is retiring, an add that keeps it (in use
// from when it was to be anyway: customers still allow it); for one not
// listed or removed, an add effective at effective.
func planAdd(byIP map[netip.Addr]store.EgressIP, ip netip.Addr, src store.EgressSource, orgID, host string, now, effective time.Time) (store.EgressChange, bool) {
	c := store.EgressChange{IP: ip, Kind: store.EgressAdd, Source: src, OrgID: orgID, Host: host, AnnouncedAt: now, EffectiveAt: effective}
	e, ok := byIP[ip]
	if !ok {
		return c, true
	}
	switch stateAt(e, now) {
	case Removed:
		return c, true
	case Announced, Active:
		if e.RetiredAt.IsZero() {
			return store.EgressChange{}, false
		}
	}
	// Retiring (or retired before it was ever used): keep it.
	c.EffectiveAt = e.ActiveAt
	if c.EffectiveAt.Before(now) {
		c.EffectiveAt = now
	}
	return c, true
}

// planRetire retires a reported address.
func planRetire(cur []store.EgressIP, ip netip.Addr, now time.Time, ahead time.Duration) ([]store.EgressChange, error) {
	e, ok := index(cur)[ip]
	if !ok || stateAt(e, now) == Removed {
		return nil, fmt.Errorf("%s: %w", ip, ErrNotListed)
	}
	if e.Source == store.EgressConfig {
		return nil, fmt.Errorf("%s: %w", ip, ErrConfigured)
	}
	if !e.RetiredAt.IsZero() {
		return nil, nil
	}
	return []store.EgressChange{{IP: ip, Kind: store.EgressRetire, Source: e.Source, AnnouncedAt: now, EffectiveAt: now.Add(ahead)}}, nil
}

// applied is cur after changes, as the store will apply them.
func applied(cur []store.EgressIP, changes []store.EgressChange) []store.EgressIP {
	byIP := index(cur)
	for _, c := range changes {
		switch c.Kind {
		case store.EgressAdd:
			byIP[c.IP] = store.EgressIP{IP: c.IP, Source: c.Source, Host: c.Host, OrgID: c.OrgID, AddedAt: c.AnnouncedAt, ActiveAt: c.EffectiveAt}
		case store.EgressRetire:
			e := byIP[c.IP]
			e.RetiredAt, e.RemovedAt = c.AnnouncedAt, c.EffectiveAt
			byIP[c.IP] = e
		}
	}
	out := make([]store.EgressIP, 0, len(byIP))
	for _, e := range byIP {
		out = append(out, e)
	}
	return sortedByAddr(out)
}

func index(cur []store.EgressIP) map[netip.Addr]store.EgressIP {
	m := make(map[netip.Addr]store.EgressIP, len(cur))
	for _, e := range cur {
		m[e.IP] = e
	}
	return m
}

// sortedByAddr sorts by address (IPv4 before IPv6, numerically), not by
// the store's text order.
func sortedByAddr(ips []store.EgressIP) []store.EgressIP {
	out := slices.Clone(ips)
	slices.SortFunc(out, func(a, b store.EgressIP) int { return a.IP.Compare(b.IP) })
	return out
}
