package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/allowlist"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

// defaultAnnounceAhead is how long the allowlist announces a change
// before it takes effect: a day gives a customer's change process time.
const defaultAnnounceAhead = 24 * time.Hour

// maxAnnounceAhead bounds --egress-announce-ahead: a longer wait is more
// likely a typo (24d for 24h) than a plan.
const maxAnnounceAhead = 90 * 24 * time.Hour

// allowlistFlags are serve's Network Allowlist flags, as given.
type allowlistFlags struct {
	ips, ipsFile, access, reportOrgs *string
	ahead                            *time.Duration
}

func addAllowlistFlags(fs *flag.FlagSet, envErr *error) *allowlistFlags {
	return &allowlistFlags{
		ips:        fs.String("egress-ips", envOr("TAILGATE_EGRESS_IPS", ""), "the runners' public egress `IPs`, comma separated, published at GET /v1/network/allowlist; \"none\" retires every configured one; unset leaves them as they are (env TAILGATE_EGRESS_IPS)"),
		ipsFile:    fs.String("egress-ips-file", envOr("TAILGATE_EGRESS_IPS_FILE", ""), "read the egress IPs from this `file`, one per line, # comments (env TAILGATE_EGRESS_IPS_FILE)"),
		ahead:      fs.Duration("egress-announce-ahead", durationEnv("TAILGATE_EGRESS_ANNOUNCE_AHEAD", defaultAnnounceAhead, envErr), "announce an added or retired egress IP this long before it takes effect (env TAILGATE_EGRESS_ANNOUNCE_AHEAD)"),
		access:     fs.String("allowlist-access", envOr("TAILGATE_ALLOWLIST_ACCESS", "public"), "who may read the allowlist and its change feed: public or token (env TAILGATE_ALLOWLIST_ACCESS)"),
		reportOrgs: fs.String("egress-report-orgs", envOr("TAILGATE_EGRESS_REPORT_ORGS", ""), "the platform's own `orgs` (ids or names, comma separated) whose tokens may report runner hosts' egress IPs; empty: none may (env TAILGATE_EGRESS_REPORT_ORGS)"),
	}
}

// egressConfig is serve's Network Allowlist configuration, checked.
type egressConfig struct {
	// ips are the configured addresses; nil: leave the configured ones
	// as they are.
	ips        []netip.Addr
	ahead      time.Duration
	needsToken bool
	reportOrgs []string
}

// parse checks the flags; every mistake is a usage error naming its flag.
func (f *allowlistFlags) parse() (egressConfig, error) {
	var c egressConfig
	switch *f.access {
	case "public":
	case "token":
		c.needsToken = true
	default:
		return c, usageError{fmt.Sprintf("--allowlist-access must be public or token, not %q", *f.access)}
	}
	if *f.ahead < 0 || *f.ahead > maxAnnounceAhead {
		return c, usageError{fmt.Sprintf("--egress-announce-ahead must be from 0 (changes take effect at once) to %s, e.g. 24h; not %s", maxAnnounceAhead, *f.ahead)}
	}
	c.ahead = *f.ahead
	if *f.ips != "" && *f.ipsFile != "" {
		return c, usageError{"give --egress-ips or --egress-ips-file, not both"}
	}
	var err error
	switch {
	case strings.TrimSpace(*f.ips) == "none":
		c.ips = []netip.Addr{}
	case *f.ips != "":
		if c.ips, err = allowlist.ParseIPList(*f.ips); err != nil {
			return c, usageError{"--egress-ips: " + err.Error()}
		}
		if len(c.ips) == 0 {
			return c, usageError{"--egress-ips lists no address; to retire every configured one, say --egress-ips none"}
		}
	case *f.ipsFile != "":
		if c.ips, err = allowlist.ReadIPFile(*f.ipsFile); err != nil {
			return c, usageError{"--egress-ips-file: " + err.Error()}
		}
	}
	for o := range strings.SplitSeq(*f.reportOrgs, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.reportOrgs = append(c.reportOrgs, o)
		}
	}
	return c, nil
}

// service builds the allowlist: it resolves the reporting orgs (by id or
// name) and applies the configured addresses.
func (c egressConfig) service(ctx context.Context, st *store.Store, kr *vault.Keyring, policy *outbound.Policy, log *slog.Logger) (*allowlist.Service, error) {
	al := &allowlist.Service{Store: st, Vault: kr, AnnounceAhead: c.ahead, Outbound: policy, Logger: log}
	if len(c.reportOrgs) > 0 {
		orgs, err := st.ListOrgs(ctx)
		if err != nil {
			return nil, err
		}
		for _, want := range c.reportOrgs {
			found := ""
			for _, o := range orgs {
				if o.ID == want || o.Name == want {
					if found != "" && found != o.ID {
						return nil, usageError{fmt.Sprintf("--egress-report-orgs: %q names more than one org; give its id", want)}
					}
					found = o.ID
				}
			}
			if found == "" {
				return nil, usageError{fmt.Sprintf("--egress-report-orgs: no org %q", want)}
			}
			al.ReportOrgs = append(al.ReportOrgs, found)
		}
	}
	if c.ips != nil {
		changes, err := al.Configure(ctx, c.ips)
		if err != nil {
			return nil, fmt.Errorf("egress IPs: %w", err)
		}
		for _, ch := range changes {
			log.Info("allowlist change announced", "ip", ch.IP.String(), "change", string(ch.Kind), "effective_at", ch.EffectiveAt)
		}
	}
	return al, nil
}
