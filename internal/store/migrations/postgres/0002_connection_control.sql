-- 0002, PostgreSQL variant of ../0002_connection_control.sql: the same
-- columns, filled from the detail JSON with PostgreSQL's JSON operators
-- instead of SQLite's json_extract. (The store only ever writes valid
-- JSON there.)
ALTER TABLE connections ADD COLUMN control_type TEXT NOT NULL DEFAULT '';
ALTER TABLE connections ADD COLUMN control_url TEXT NOT NULL DEFAULT '';
UPDATE connections SET
	control_type = coalesce(detail::jsonb #>> '{control,type}', ''),
	control_url = coalesce(detail::jsonb #>> '{control,url}', '')
WHERE detail::jsonb -> 'control' IS NOT NULL;
