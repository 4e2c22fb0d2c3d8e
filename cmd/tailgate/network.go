package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/tailgate-dev/tailgate/internal/allowlist"
)

func init() {
	register(command{
		name:    "network",
		summary: "the Network Allowlist: the runners' public egress IPs and their change feed",
		run:     runNetwork,
	})
}

const networkUsage = `usage: tailgate network allowlist [--server URL] [--changes SINCE] [--json]

  allowlist                   the public egress IPs of the platform's runners:
                              those in use now, and those announced (in use
                              from their active time) or retiring (listed
                              until their removal time)
  allowlist --changes SINCE   the change feed after the cursor SINCE (0: all),
                              every page, and the cursor to pass next time

--server URL (env TAILGATE_SERVER, default http://127.0.0.1:8080); --json
prints the server's JSON (the pages of the feed merged into one). The
allowlist is public unless the server requires a token: TAILGATE_TOKEN is
sent when set.`

func runNetwork(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := oneCommand(args, "network", "allowlist", networkUsage, stderr); err != nil {
		return err
	}
	fs := newFlagSet("network allowlist", stderr)
	server := fs.String("server", envOr("TAILGATE_SERVER", "http://127.0.0.1:8080"), "tailgate server `URL` (env TAILGATE_SERVER)")
	asJSON := fs.Bool("json", false, "print the server's JSON answer")
	changes := fs.String("changes", "", "print the change feed after this `cursor` (0: from the start) instead of the list")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{"network allowlist takes no arguments"}
	}
	changesSet := false
	fs.Visit(func(f *flag.Flag) { changesSet = changesSet || f.Name == "changes" })
	if changesSet {
		if _, err := allowlist.ParseCursor(*changes); err != nil || *changes == "" {
			return usageError{fmt.Sprintf("--changes must be a cursor: 0 for the whole feed, or the cursor the allowlist or an earlier --changes printed; not %q", *changes)}
		}
	}
	c, err := newOptionalTokenClient(*server)
	if err != nil {
		return err
	}
	out := &envOutput{w: stdout, json: *asJSON}
	if !changesSet {
		var l allowlist.List
		raw, err := c.do(ctx, "GET", "/v1/network/allowlist", nil, &l)
		if err != nil {
			return err
		}
		return out.print(raw, func(w io.Writer) { printAllowlist(w, l) })
	}
	all, err := allowlist.ReadFeed(*changes, 1000, func(since string) (allowlist.ChangePage, error) {
		var p allowlist.ChangePage
		_, err := c.do(ctx, "GET", "/v1/network/allowlist/changes?since="+url.QueryEscape(since)+"&limit="+strconv.Itoa(allowlist.MaxPageSize), nil, &p)
		return p, err
	})
	if err != nil {
		return err
	}
	raw, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	return out.print(raw, func(w io.Writer) { printChanges(w, all) })
}

func printAllowlist(w io.Writer, l allowlist.List) {
	if len(l.Entries) == 0 {
		fmt.Fprintln(w, "The allowlist is empty.")
	} else {
		tw := table(w)
		fmt.Fprintln(tw, "IP\tSTATE\tIN USE FROM\tREMOVED AT")
		for _, e := range l.Entries {
			removed := "-"
			if e.RemovedAt != nil {
				removed = e.RemovedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.IP, e.State, e.ActiveAt.Format(time.RFC3339), removed)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nAllow every address listed: announced ones are in use from their time, retiring ones until theirs.\n")
	fmt.Fprintf(w, "Changes are announced %s ahead. Follow them: tailgate network allowlist --changes %s\n",
		time.Duration(l.AnnounceAheadSeconds)*time.Second, l.Cursor)
}

func printChanges(w io.Writer, p allowlist.ChangePage) {
	if len(p.Changes) == 0 {
		fmt.Fprintln(w, "No changes.")
	} else {
		tw := table(w)
		fmt.Fprintln(tw, "CURSOR\tCHANGE\tIP\tANNOUNCED\tEFFECTIVE")
		for _, c := range p.Changes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Cursor, c.Change, c.IP, c.AnnouncedAt.Format(time.RFC3339), c.EffectiveAt.Format(time.RFC3339))
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nNext: tailgate network allowlist --changes %s\n", p.Cursor)
}
