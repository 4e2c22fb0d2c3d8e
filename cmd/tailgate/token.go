package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
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
		return usageError{"usage: tailgate token create --db PATH --org NAME --role admin|runner --name NAME"}
	}
	fs := newFlagSet("token create", stderr)
	dbPath := fs.String("db", envOr("TAILGATE_DB", defaultDB), "SQLite database `path` (env TAILGATE_DB)")
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
	if _, err := os.Stat(*dbPath); err != nil {
		return fmt.Errorf("database %s: %w (run tailgate serve once, or pass --db)", *dbPath, err)
	}
	orgID, err := findOrg(ctx, *dbPath, *orgName)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer st.Close()
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

// The store has no way to list orgs or find one by name yet (the API only
// needs org ids, which tokens carry). Until it does, the two offline
// questions the CLI asks, "is this a new database?" and "which org is
// called default?", are answered by a read-only query on the orgs table.
// TODO(store): replace with store.ListOrgs / store.OrgByName.

func openReadOnly(dbPath string) (*sql.DB, error) {
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_busy_timeout", "5000")
	return sql.Open("sqlite", "file:"+(&url.URL{Path: dbPath}).EscapedPath()+"?"+q.Encode())
}

// countOrgs reports how many orgs the database holds.
func countOrgs(ctx context.Context, dbPath string) (int, error) {
	db, err := openReadOnly(dbPath)
	if err != nil {
		return 0, fmt.Errorf("count orgs: %w", err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM orgs`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count orgs: %w", err)
	}
	return n, nil
}

// findOrg finds an org by id or by name; a name several orgs share is
// refused rather than guessed.
func findOrg(ctx context.Context, dbPath, nameOrID string) (string, error) {
	db, err := openReadOnly(dbPath)
	if err != nil {
		return "", fmt.Errorf("find org: %w", err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT id, name FROM orgs WHERE id = ? OR name = ? ORDER BY created_at`, nameOrID, nameOrID)
	if err != nil {
		return "", fmt.Errorf("find org: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return "", fmt.Errorf("find org: %w", err)
		}
		if id == nameOrID {
			return id, nil
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("find org: %w", err)
	}
	switch len(ids) {
	case 0:
		return "", errors.New("no org named " + fmt.Sprintf("%q", nameOrID) + " in the database")
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%d orgs are named %q; pass one of their ids: %s", len(ids), nameOrID, strings.Join(ids, ", "))
}
