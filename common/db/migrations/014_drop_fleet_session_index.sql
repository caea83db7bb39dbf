-- 011 indexed spend_usage by (session_id, at) for the fleet page's "latest request of each
-- session". Since 012 the fleet page reads fleet_sessions (kept by a trigger), and nothing reads
-- spend_usage by session any more: the index only cost every settle an extra index insert.
DROP INDEX IF EXISTS spend_usage_session_at;
