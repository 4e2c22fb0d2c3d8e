package store

import (
	"context"
	"errors"
	"fmt"
)

var (
	// ErrUnreachable: the database did not answer.
	ErrUnreachable = errors.New("database unreachable")
	// ErrSchemaNotCurrent: the database's schema is not the one this
	// binary migrates to (behind: migrations not applied; ahead: a newer
	// tailgate wrote it).
	ErrSchemaNotCurrent = errors.New("database schema not current")
)

// Ready reports whether the store can serve requests: the database answers
// and its schema is exactly [SchemaVersion]. It is what a readiness probe
// asks (GET /readyz). The error wraps [ErrUnreachable] or
// [ErrSchemaNotCurrent]; its text names the versions but never a path or a
// row.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	var have int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&have); err != nil {
		return fmt.Errorf("%w: read schema version: %w", ErrUnreachable, err)
	}
	if want := SchemaVersion(); have != want {
		return fmt.Errorf("%w: the database is at schema version %d, this tailgate needs %d", ErrSchemaNotCurrent, have, want)
	}
	return nil
}
