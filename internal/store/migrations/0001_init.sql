-- 0001: organisations, API tokens, environments and what hangs off them.
-- Times are Unix milliseconds (UTC). Every row that belongs to an
-- environment also carries its org_id, tied to the environment by a
-- composite foreign key, so tenancy can be checked in the WHERE clause of
-- every query without trusting the caller's env id alone.

CREATE TABLE orgs (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	created_at INTEGER NOT NULL
);

-- Only the SHA-256 of a token is kept; the token itself is shown once.
CREATE TABLE api_tokens (
	id         TEXT PRIMARY KEY,
	org_id     TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	role       TEXT NOT NULL CHECK (role IN ('admin', 'runner')),
	hash       BLOB NOT NULL UNIQUE,
	created_at INTEGER NOT NULL,
	revoked_at INTEGER
);
CREATE INDEX api_tokens_org ON api_tokens(org_id);

CREATE TABLE environments (
	id         TEXT PRIMARY KEY,
	org_id     TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (org_id, name),
	UNIQUE (id, org_id)
);

-- One connection per environment: the result of the last connect.
CREATE TABLE connections (
	env_id            TEXT PRIMARY KEY,
	org_id            TEXT NOT NULL,
	state             TEXT NOT NULL CHECK (state IN ('connected', 'verified', 'failing')),
	tag               TEXT NOT NULL,
	cidrs             TEXT NOT NULL DEFAULT '[]',
	warnings          TEXT NOT NULL DEFAULT '[]',
	targets           TEXT NOT NULL DEFAULT '[]',
	detail            TEXT NOT NULL DEFAULT 'null',
	oauth_client_id   TEXT NOT NULL,
	secret_key_id     TEXT NOT NULL,
	secret_nonce      BLOB NOT NULL,
	secret_ciphertext BLOB NOT NULL,
	created_at        INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL,
	FOREIGN KEY (env_id, org_id) REFERENCES environments(id, org_id) ON DELETE CASCADE
);

CREATE TABLE verifications (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	env_id  TEXT NOT NULL,
	org_id  TEXT NOT NULL,
	at      INTEGER NOT NULL,
	ok      INTEGER NOT NULL CHECK (ok IN (0, 1)),
	results TEXT NOT NULL DEFAULT 'null',
	FOREIGN KEY (env_id, org_id) REFERENCES environments(id, org_id) ON DELETE CASCADE
);
CREATE INDEX verifications_env_at ON verifications(env_id, at DESC, id DESC);

-- Runs: one ephemeral node serving one browser session (used by the run
-- issue; kept minimal here).
CREATE TABLE runs (
	id            TEXT PRIMARY KEY,
	env_id        TEXT NOT NULL,
	org_id        TEXT NOT NULL,
	state         TEXT NOT NULL,
	node_hostname TEXT NOT NULL DEFAULT '',
	device_id     TEXT NOT NULL DEFAULT '',
	proxy_addr    TEXT NOT NULL DEFAULT '',
	started_at    INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL,
	ended_at      INTEGER,
	end_reason    TEXT NOT NULL DEFAULT '',
	FOREIGN KEY (env_id, org_id) REFERENCES environments(id, org_id) ON DELETE CASCADE
);
CREATE INDEX runs_env ON runs(env_id, started_at);
CREATE INDEX runs_open ON runs(ended_at) WHERE ended_at IS NULL;
