-- 0003, PostgreSQL variant of ../0003_federation.sql: the same columns
-- and table, with times as BIGINT (Unix milliseconds) and bytes as BYTEA.
ALTER TABLE connections ADD COLUMN credential TEXT NOT NULL DEFAULT '';
ALTER TABLE connections ADD COLUMN audience TEXT NOT NULL DEFAULT '';

CREATE TABLE signing_keys (
	kid               TEXT PRIMARY KEY,
	alg               TEXT NOT NULL,
	secret_key_id     TEXT NOT NULL,
	secret_nonce      BYTEA NOT NULL,
	secret_ciphertext BYTEA NOT NULL,
	created_at        BIGINT NOT NULL,
	not_before        BIGINT NOT NULL,
	not_after         BIGINT
);
