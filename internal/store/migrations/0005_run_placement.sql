-- 0005: what a run needs beyond the process that started it, so any of
-- several tailgate replicas on one database can read, heartbeat and end
-- it: where its node lives (placement), which replica's process holds
-- that node (holder: '' when no tailgate process does, as for a node on
-- the runner's host), and the deadline of its lease (NULL: no lease).
-- Portable SQL: the same file serves SQLite and PostgreSQL.
ALTER TABLE runs ADD COLUMN placement TEXT NOT NULL DEFAULT 'server';
ALTER TABLE runs ADD COLUMN holder TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN lease_until BIGINT;
-- Runs left open before this migration were held by a process that did
-- not record itself, and which is gone: the orphan sweep ends them.
UPDATE runs SET holder = 'unrecorded' WHERE ended_at IS NULL;
CREATE INDEX runs_holder ON runs(holder) WHERE ended_at IS NULL;

-- The tailgate processes sharing this database, each seen when it last
-- checked its runs: a replica not seen for a while has stopped, and the
-- open runs it held are orphans.
CREATE TABLE replicas (
	id         TEXT PRIMARY KEY,
	started_at BIGINT NOT NULL,
	seen_at    BIGINT NOT NULL
);
