package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/store"
)

func init() {
	register(command{
		name:    "token",
		summary: "create a tailgate API token offline, in the server's database",
		run:     runToken,
	})
}

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return usageError{"usage: tailgate token create --db PATH|URL --org NAME --role admin|runner --name NAME"}
	}
	fs := newFlagSet("token create", stderr)
	dbPath := fs.String("db", envOr("TAILGATE_DB", defaultDB), dbFlagUsage)
	orgName := fs.String("org", "default", "the org, by `name` or id")
	role := fs.String("role", "", "admin or runner")
	name := fs.String("name", "", "what the token is for, e.g. ci")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"token create takes no arguments"}
	}
	if !store.Role(*role).Valid() {
		return usageError{"--role must be admin or runner"}
	}
	if strings.TrimSpace(*name) == "" {
		return usageError{"--name is required (what the token is for, e.g. ci)"}
	}
	if _, err := os.Stat(*dbPath); err != nil && !store.IsPostgres(*dbPath) {
		return fmt.Errorf("database %s: %w (run tailgate serve once, or pass --db)", *dbPath, err)
	}
	st, err := store.Open(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer st.Close()
	orgID, err := findOrg(ctx, st, *orgName)
	if err != nil {
		return err
	}
	token, tok, err := st.CreateAPIToken(ctx, orgID, *name, store.Role(*role))
	if err != nil {
		return err
	}
	// The token alone on stdout, so scripts can capture it; the note on
	// stderr.
	fmt.Fprintln(stdout, token)
	fmt.Fprintf(stderr, "Created %s token %q (%s) for org %s. Save it now: it is shown only once.\n", tok.Role, tok.Name, tok.ID, *orgName)
	return nil
}

// findOrg finds an org by id or by name; a name several orgs share is
// refused rather than guessed.
func findOrg(ctx context.Context, st *store.Store, nameOrID string) (string, error) {
	orgs, err := st.ListOrgs(ctx)
	if err != nil {
		return "", err
	}
	var ids []string
	for _, o := range orgs {
		if o.ID == nameOrID {
			return o.ID, nil
		}
		if o.Name == nameOrID {
			ids = append(ids, o.ID)
		}
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("no org named %q in the database", nameOrID)
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%d orgs are named %q; pass one of their ids: %s", len(ids), nameOrID, strings.Join(ids, ", "))
}
