package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/tailgate-dev/tailgate/internal/vault"
)

// EgressSource says where a listed egress address came from.
type EgressSource string

const (
	// EgressConfig: the server's configuration (--egress-ips).
	EgressConfig EgressSource = "config"
	// EgressReported: a runner host reported it (POST /v1/network/egress).
	EgressReported EgressSource = "reported"
)

// EgressIP is one public egress address of the platform's runners, as the
// Network Allowlist keeps it: when it was announced, when it is (or was)
// first used, and, once retired, when it leaves the list. An address
// re-added after removal reuses its row.
type EgressIP struct {
	IP       netip.Addr
	Source   EgressSource
	Host     string // the reporting runner host's label; "" for config
	OrgID    string // the reporting org; "" for config
	AddedAt  time.Time
	ActiveAt time.Time
	// RetiredAt is when its retirement was announced; zero while listed
	// for good.
	RetiredAt time.Time
	// RemovedAt is when it leaves the list; zero while not retired.
	RemovedAt time.Time
}

// EgressChangeKind is what a change announces.
type EgressChangeKind string

const (
	// EgressAdd announces an address that is in use from EffectiveAt on.
	EgressAdd EgressChangeKind = "add"
	// EgressRetire announces an address that leaves the list at EffectiveAt.
	EgressRetire EgressChangeKind = "retire"
)

// EgressChange is one entry of the allowlist's change feed.
type EgressChange struct {
	// Seq orders the feed: later changes have larger numbers, in commit
	// order. Set by the store.
	Seq         int64
	IP          netip.Addr
	Kind        EgressChangeKind
	Source      EgressSource
	AnnouncedAt time.Time
	EffectiveAt time.Time
	// Host and OrgID describe the reporter of an add; they are kept on
	// the address, not in the feed.
	Host  string
	OrgID string
}

// egressLock is the PostgreSQL advisory lock key that serialises writers
// of the change feed, so sequence numbers become visible in order and a
// reader's cursor never skips a change committed late: "egress" in ASCII.
const egressLock int64 = 0x656772657373

// EgressIPs returns every address the allowlist has ever listed, removed
// ones included, sorted by address.
func (s *Store) EgressIPs(ctx context.Context) ([]EgressIP, error) {
	return s.egressIPs(ctx, s.db, "")
}

func (s *Store) egressIPs(ctx context.Context, q queries, lock string) ([]EgressIP, error) {
	return queryAll(ctx, q, "egress ips", func(r scanner) (EgressIP, error) {
		var e EgressIP
		var ip, src string
		var added, active int64
		var retired, removed sql.NullInt64
		if err := r.Scan(&ip, &src, &e.Host, &e.OrgID, &added, &active, &retired, &removed); err != nil {
			return EgressIP{}, err
		}
		var err error
		if e.IP, err = netip.ParseAddr(ip); err != nil {
			return EgressIP{}, fmt.Errorf("row %q: %w", ip, err)
		}
		e.Source, e.AddedAt, e.ActiveAt = EgressSource(src), fromMS(added), fromMS(active)
		e.RetiredAt, e.RemovedAt = fromNullMS(retired), fromNullMS(removed)
		return e, nil
	}, `SELECT ip, source, host, org_id, added_at, active_at, retired_at, removed_at
		FROM egress_ips ORDER BY ip`+lock)
}

// EditEgress changes the allowlist in one transaction that no other
// writer of the feed interleaves with: plan sees every address ever
// listed (as EgressIPs returns them) and returns the changes to make; the
// store applies each (an add lists the address afresh from AnnouncedAt,
// active from EffectiveAt; a retire sets its retirement and removal
// times) and appends it to the feed. It returns the changes with their
// sequence numbers. An error from plan rolls everything back.
func (s *Store) EditEgress(ctx context.Context, plan func(current []EgressIP) ([]EgressChange, error)) ([]EgressChange, error) {
	var out []EgressChange
	err := s.tx(ctx, func(tx queries) error {
		out = nil
		if s.engine == enginePostgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, egressLock); err != nil {
				return fmt.Errorf("store: lock the egress feed: %w", err)
			}
		}
		cur, err := s.egressIPs(ctx, tx, "")
		if err != nil {
			return err
		}
		changes, err := plan(cur)
		if err != nil {
			return err
		}
		for _, c := range changes {
			if !c.IP.IsValid() {
				return errors.New("store: edit egress: a change without an address")
			}
			ip := c.IP.String()
			announced, effective := ms(c.AnnouncedAt), ms(c.EffectiveAt)
			switch c.Kind {
			case EgressAdd:
				_, err = tx.ExecContext(ctx, `INSERT INTO egress_ips (ip, source, host, org_id, added_at, active_at)
					VALUES (?, ?, ?, ?, ?, ?)
					ON CONFLICT (ip) DO UPDATE SET source = excluded.source, host = excluded.host, org_id = excluded.org_id,
						added_at = excluded.added_at, active_at = excluded.active_at, retired_at = NULL, removed_at = NULL`,
					ip, string(c.Source), c.Host, c.OrgID, announced, effective)
			case EgressRetire:
				var res sql.Result
				res, err = tx.ExecContext(ctx, `UPDATE egress_ips SET retired_at = ?, removed_at = ? WHERE ip = ?`, announced, effective, ip)
				if err == nil {
					if n, _ := res.RowsAffected(); n == 0 {
						return fmt.Errorf("store: retire %s: %w", ip, ErrNotFound)
					}
				}
			default:
				return fmt.Errorf("store: edit egress: unknown change %q", c.Kind)
			}
			if err != nil {
				return fmt.Errorf("store: edit egress %s: %w", ip, err)
			}
			err = tx.QueryRowContext(ctx, `INSERT INTO egress_changes (ip, kind, source, announced_at, effective_at)
				VALUES (?, ?, ?, ?, ?) RETURNING seq`, ip, string(c.Kind), string(c.Source), announced, effective).Scan(&c.Seq)
			if err != nil {
				return fmt.Errorf("store: egress feed: %w", err)
			}
			c.AnnouncedAt, c.EffectiveAt = fromMS(announced), fromMS(effective)
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EgressChanges returns up to limit changes of the feed after sequence
// number after (0: from the start), oldest first.
func (s *Store) EgressChanges(ctx context.Context, after int64, limit int) ([]EgressChange, error) {
	return queryAll(ctx, s.db, "egress changes", func(r scanner) (EgressChange, error) {
		var c EgressChange
		var ip, kind, src string
		var announced, effective int64
		if err := r.Scan(&c.Seq, &ip, &kind, &src, &announced, &effective); err != nil {
			return EgressChange{}, err
		}
		var err error
		if c.IP, err = netip.ParseAddr(ip); err != nil {
			return EgressChange{}, fmt.Errorf("row %d: %w", c.Seq, err)
		}
		c.Kind, c.Source = EgressChangeKind(kind), EgressSource(src)
		c.AnnouncedAt, c.EffectiveAt = fromMS(announced), fromMS(effective)
		return c, nil
	}, `SELECT seq, ip, kind, source, announced_at, effective_at
		FROM egress_changes WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
}

// LatestEgressChange is the sequence number of the feed's newest change;
// 0 while the feed is empty.
func (s *Store) LatestEgressChange(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM egress_changes`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: egress feed: %w", err)
	}
	return n, nil
}

// EgressWebhook is an org's allowlist webhook and the state of its
// deliveries. Its signing secret is sealed; the store never sees it in
// the clear.
type EgressWebhook struct {
	ID        string
	OrgID     string
	URL       string
	Secret    vault.Sealed
	CreatedAt time.Time
	// DeliveredSeq is the newest change the receiver has acknowledged
	// (or, for a new webhook, the feed's newest change when it was set).
	DeliveredSeq int64
	// Attempts counts failed deliveries since the last success.
	Attempts      int
	NextAttemptAt time.Time
	LastAttemptAt time.Time
	LastSuccessAt time.Time
	// LastError says, in tailgate's words, why the last delivery failed;
	// never what the receiver answered.
	LastError string
}

// PutEgressWebhook sets orgID's webhook, replacing any it had: a new id,
// and deliveries start after the feed's newest change.
func (s *Store) PutEgressWebhook(ctx context.Context, orgID, url string, secret vault.Sealed) (EgressWebhook, error) {
	now := s.now().Truncate(time.Millisecond)
	w := EgressWebhook{ID: newID("whk"), OrgID: orgID, URL: url, Secret: secret, CreatedAt: now, NextAttemptAt: now}
	err := s.tx(ctx, func(tx queries) error {
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM egress_changes`).Scan(&w.DeliveredSeq); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM egress_webhooks WHERE org_id = ?`, orgID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO egress_webhooks (id, org_id, url, secret_key_id, secret_nonce, secret_ciphertext,
			created_at, delivered_seq, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			w.ID, orgID, url, secret.KeyID, secret.Nonce, secret.Ciphertext, ms(now), w.DeliveredSeq, ms(now))
		return err
	})
	if err != nil {
		return EgressWebhook{}, fmt.Errorf("store: put egress webhook: %w", err)
	}
	return w, nil
}

const egressWebhookColumns = `id, org_id, url, secret_key_id, secret_nonce, secret_ciphertext, created_at,
	delivered_seq, attempts, next_attempt_at, last_attempt_at, last_success_at, last_error`

// GetEgressWebhook returns orgID's webhook, or ErrNotFound.
func (s *Store) GetEgressWebhook(ctx context.Context, orgID string) (EgressWebhook, error) {
	w, err := scanEgressWebhook(s.db.QueryRowContext(ctx, `SELECT `+egressWebhookColumns+` FROM egress_webhooks WHERE org_id = ?`, orgID))
	if errors.Is(err, sql.ErrNoRows) {
		return EgressWebhook{}, fmt.Errorf("store: egress webhook: %w", ErrNotFound)
	}
	return w, err
}

// DeleteEgressWebhook removes orgID's webhook; ErrNotFound if it has none.
func (s *Store) DeleteEgressWebhook(ctx context.Context, orgID string) error {
	return execOne(ctx, s.db, "delete egress webhook", "egress webhook", `DELETE FROM egress_webhooks WHERE org_id = ?`, orgID)
}

// DueEgressWebhooks returns the webhooks that are behind the feed (whose
// DeliveredSeq is older than its newest change) and whose next attempt is
// due at now.
func (s *Store) DueEgressWebhooks(ctx context.Context, now time.Time) ([]EgressWebhook, error) {
	return queryAll(ctx, s.db, "due egress webhooks", scanEgressWebhook, `SELECT `+egressWebhookColumns+` FROM egress_webhooks
		WHERE next_attempt_at <= ? AND delivered_seq < (SELECT COALESCE(MAX(seq), 0) FROM egress_changes)
		ORDER BY next_attempt_at, id`, ms(now))
}

// EgressDelivery is the outcome of one delivery attempt.
type EgressDelivery struct {
	At time.Time
	// DeliveredSeq is the newest change the receiver acknowledged; on a
	// failure, the webhook's DeliveredSeq as before.
	DeliveredSeq int64
	OK           bool
	// Attempts, NextAttemptAt and Error describe the retry after a
	// failure (zero after a success, when the next delivery is due at
	// once if the feed has moved on).
	Attempts      int
	NextAttemptAt time.Time
	Error         string
}

// RecordEgressDelivery records a delivery attempt to the webhook with
// this id. A webhook replaced or deleted meanwhile is left alone.
func (s *Store) RecordEgressDelivery(ctx context.Context, orgID, id string, d EgressDelivery) error {
	at := ms(d.At)
	var err error
	if d.OK {
		_, err = s.db.ExecContext(ctx, `UPDATE egress_webhooks SET delivered_seq = ?, attempts = 0, next_attempt_at = ?,
			last_attempt_at = ?, last_success_at = ?, last_error = '' WHERE id = ? AND org_id = ?`,
			d.DeliveredSeq, at, at, at, id, orgID)
	} else {
		_, err = s.db.ExecContext(ctx, `UPDATE egress_webhooks SET attempts = ?, next_attempt_at = ?,
			last_attempt_at = ?, last_error = ? WHERE id = ? AND org_id = ?`,
			d.Attempts, ms(d.NextAttemptAt), at, d.Error, id, orgID)
	}
	if err != nil {
		return fmt.Errorf("store: record egress delivery: %w", err)
	}
	return nil
}

func scanEgressWebhook(r scanner) (EgressWebhook, error) {
	var w EgressWebhook
	var created, next int64
	var last, success sql.NullInt64
	err := r.Scan(&w.ID, &w.OrgID, &w.URL, &w.Secret.KeyID, &w.Secret.Nonce, &w.Secret.Ciphertext, &created,
		&w.DeliveredSeq, &w.Attempts, &next, &last, &success, &w.LastError)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return EgressWebhook{}, err
		}
		return EgressWebhook{}, fmt.Errorf("store: egress webhook: %w", err)
	}
	w.CreatedAt, w.NextAttemptAt = fromMS(created), fromMS(next)
	w.LastAttemptAt, w.LastSuccessAt = fromNullMS(last), fromNullMS(success)
	return w, nil
}
