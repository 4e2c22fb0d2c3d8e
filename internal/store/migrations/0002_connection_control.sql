-- 0002: a connection's control plane as columns of its own, read once at
-- load, instead of a key inside the connect package's detail JSON. The
-- server's own Tailscale is the empty type.
ALTER TABLE connections ADD COLUMN control_type TEXT NOT NULL DEFAULT '';
ALTER TABLE connections ADD COLUMN control_url TEXT NOT NULL DEFAULT '';
UPDATE connections SET
	control_type = coalesce(json_extract(detail, '$.control.type'), ''),
	control_url = coalesce(json_extract(detail, '$.control.url'), '')
WHERE json_valid(detail) AND json_extract(detail, '$.control') IS NOT NULL;
