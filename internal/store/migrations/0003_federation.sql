-- 0003: workload identity federation. A connection says which credential
-- it keeps (credential: 'oauth_client', 'federated_identity' or
-- 'preauth_key'; '' in rows from before 0003, read as the control's
-- stored credential) and, for a federated identity, the audience its ID
-- tokens carry. A federated connection stores no secret: its secret
-- columns are empty. signing_keys are tailgate's OIDC signing keys, the
-- private key sealed by the vault (bound to the key id): published in the
-- JWKS from created_at until not_after (NULL: not retired), signing from
-- not_before.
ALTER TABLE connections ADD COLUMN credential TEXT NOT NULL DEFAULT '';
ALTER TABLE connections ADD COLUMN audience TEXT NOT NULL DEFAULT '';

CREATE TABLE signing_keys (
	kid               TEXT PRIMARY KEY,
	alg               TEXT NOT NULL,
	secret_key_id     TEXT NOT NULL,
	secret_nonce      BLOB NOT NULL,
	secret_ciphertext BLOB NOT NULL,
	created_at        INTEGER NOT NULL,
	not_before        INTEGER NOT NULL,
	not_after         INTEGER
);
