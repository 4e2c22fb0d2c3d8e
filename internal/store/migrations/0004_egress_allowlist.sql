-- 0004: the Network Allowlist. egress_ips is the platform's public egress
-- addresses, one row per address ever listed; egress_changes is the change
-- feed, one row per announced change, numbered in commit order (writers
-- serialise, see Store.EditEgress); egress_webhooks is each org's optional
-- webhook, its sealed signing secret and how far deliveries have got.
-- Times are Unix milliseconds (UTC).

CREATE TABLE egress_ips (
	ip         TEXT PRIMARY KEY,
	source     TEXT NOT NULL CHECK (source IN ('config', 'reported')),
	host       TEXT NOT NULL DEFAULT '',
	org_id     TEXT NOT NULL DEFAULT '',
	added_at   INTEGER NOT NULL,
	active_at  INTEGER NOT NULL,
	retired_at INTEGER,
	removed_at INTEGER
);

CREATE TABLE egress_changes (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	ip           TEXT NOT NULL,
	kind         TEXT NOT NULL CHECK (kind IN ('add', 'retire')),
	source       TEXT NOT NULL,
	announced_at INTEGER NOT NULL,
	effective_at INTEGER NOT NULL
);

CREATE TABLE egress_webhooks (
	id                TEXT PRIMARY KEY,
	org_id            TEXT NOT NULL UNIQUE REFERENCES orgs(id) ON DELETE CASCADE,
	url               TEXT NOT NULL,
	secret_key_id     TEXT NOT NULL,
	secret_nonce      BLOB NOT NULL,
	secret_ciphertext BLOB NOT NULL,
	created_at        INTEGER NOT NULL,
	delivered_seq     INTEGER NOT NULL,
	attempts          INTEGER NOT NULL DEFAULT 0,
	next_attempt_at   INTEGER NOT NULL,
	last_attempt_at   INTEGER,
	last_success_at   INTEGER,
	last_error        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX egress_webhooks_due ON egress_webhooks(next_attempt_at);
