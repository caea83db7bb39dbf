-- The fleet page (docs/console.md): which Claude Code each request came from, on
-- which sign-in session, and whether it ran the managed settings the gateway served.
--
-- spend_usage gains three nullable columns (old rows and old writers leave them NULL):
--   client          the User-Agent's first product token, e.g. 'claude-cli/2.1.333'
--   session_id      the gateway sign-in session (auth_sessions.id) of the bearer
--   settings_check  'match' | 'unknown' | 'missing' for x-claude-code-managed-settings-checksum,
--                   NULL when the caller's policy does not push CLAUDE_CODE_GATEWAY_HINT_HEADERS
--                   and no header came. The header itself is never stored (PROTOCOL: sensitive).
ALTER TABLE spend_usage ADD COLUMN IF NOT EXISTS client text;
ALTER TABLE spend_usage ADD COLUMN IF NOT EXISTS session_id text;
ALTER TABLE spend_usage ADD COLUMN IF NOT EXISTS settings_check text
    CHECK (settings_check IN ('match', 'unknown', 'missing'));
CREATE INDEX IF NOT EXISTS spend_usage_session_at ON spend_usage (session_id, at DESC) WHERE session_id IS NOT NULL;

-- The managed-settings checksums this gateway served, and when last (policy.hints):
-- a session may keep sending the previous value for an hour or more after an edit.
CREATE TABLE IF NOT EXISTS managed_served (
    checksum        text PRIMARY KEY,   -- the `checksum` of a /managed/settings answer (served to its users)
    policy          text NOT NULL,
    first_served_at timestamptz NOT NULL DEFAULT now(),
    last_served_at  timestamptz NOT NULL DEFAULT now()
);

-- spend_settle with the three new columns as trailing parameters defaulting to NULL,
-- so a caller of the 22-argument form (an instance not yet updated) still works.
DROP FUNCTION IF EXISTS spend_settle(uuid, text, timestamptz, date, text, text, text[], text, text, text, text, text,
    integer, bigint, bigint, bigint, bigint, bigint, bigint, text[], smallint[], boolean);
CREATE OR REPLACE FUNCTION spend_settle(
    p_reservation uuid, p_request_id text, p_at timestamptz, p_day date,
    p_user text, p_sub text, p_groups text[], p_model text, p_upstream text, p_upstream_model text,
    p_billing_group text, p_endpoint text, p_status integer,
    p_input bigint, p_output bigint, p_cache_read bigint, p_cache_5m bigint, p_cache_1h bigint,
    p_cost bigint, p_keys text[], p_shards smallint[], p_sweep boolean,
    p_client text DEFAULT NULL, p_session_id text DEFAULT NULL, p_settings_check text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    DELETE FROM spend_holds WHERE reservation_id = p_reservation;
    IF p_sweep THEN
        DELETE FROM spend_holds WHERE expires_at < clock_timestamp();
    END IF;
    INSERT INTO spend_usage (request_key, request_id, at, day, user_email, user_sub, groups, model, upstream,
        upstream_model, billing_group, endpoint, status, input_tokens, output_tokens, cache_read_tokens,
        cache_write_5m_tokens, cache_write_1h_tokens, cost_micros, client, session_id, settings_check)
    VALUES (p_reservation, p_request_id, p_at, p_day, p_user, p_sub, coalesce(p_groups, '{}'), p_model, p_upstream,
        p_upstream_model, p_billing_group, p_endpoint, p_status, p_input, p_output, p_cache_read,
        p_cache_5m, p_cache_1h, p_cost, p_client, p_session_id, p_settings_check)
    ON CONFLICT (request_key) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_cost > 0 THEN
        INSERT INTO spend_counters AS c (scope_key, day, shard, spent_micros)
        SELECT t.k, p_day, t.s, p_cost FROM unnest(p_keys, p_shards) AS t(k, s)
        ON CONFLICT (scope_key, day, shard) DO UPDATE SET spent_micros = c.spent_micros + EXCLUDED.spent_micros;
    END IF;
    RETURN true;
END
$$;

-- spend_settle_batch as in 004, also writing the three columns (absent JSON keys: NULL).
CREATE OR REPLACE FUNCTION spend_settle_batch(p_items jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    DELETE FROM spend_holds
    WHERE reservation_id IN (SELECT (e->>'reservation')::uuid FROM jsonb_array_elements(p_items) AS e);
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_items) AS e WHERE (e->>'sweep')::boolean) THEN
        DELETE FROM spend_holds WHERE expires_at < clock_timestamp();
    END IF;
    WITH items AS (
        SELECT DISTINCT ON ((e->>'reservation')::uuid) (e->>'reservation')::uuid AS reservation, e->>'request_id' AS request_id,
               (e->>'at')::timestamptz AS at, (e->>'day')::date AS day,
               e->>'user' AS user_email, e->>'sub' AS user_sub,
               ARRAY(SELECT jsonb_array_elements_text(e->'groups')) AS groups,
               e->>'model' AS model, e->>'upstream' AS upstream, e->>'upstream_model' AS upstream_model,
               e->>'billing_group' AS billing_group, e->>'endpoint' AS endpoint, (e->>'status')::integer AS status,
               (e->>'input')::bigint AS input, (e->>'output')::bigint AS output,
               (e->>'cache_read')::bigint AS cache_read, (e->>'cache_5m')::bigint AS cache_5m,
               (e->>'cache_1h')::bigint AS cache_1h, (e->>'cost')::bigint AS cost,
               e->'keys' AS keys, e->'shards' AS shards,
               e->>'client' AS client, e->>'session_id' AS session_id, e->>'settings_check' AS settings_check
        FROM jsonb_array_elements(p_items) AS e
    ), written AS (
        INSERT INTO spend_usage (request_key, request_id, at, day, user_email, user_sub, groups, model, upstream,
            upstream_model, billing_group, endpoint, status, input_tokens, output_tokens, cache_read_tokens,
            cache_write_5m_tokens, cache_write_1h_tokens, cost_micros, client, session_id, settings_check)
        SELECT reservation, request_id, at, day, user_email, user_sub, groups, model, upstream, upstream_model,
            billing_group, endpoint, status, input, output, cache_read, cache_5m, cache_1h, cost,
            client, session_id, settings_check
        FROM items
        ON CONFLICT (request_key) DO NOTHING
        RETURNING request_key
    ), increments AS (
        SELECT k.key AS scope_key, i.day, k.shard::smallint AS shard, sum(i.cost) AS micros
        FROM items AS i
        JOIN written AS w ON w.request_key = i.reservation
        CROSS JOIN LATERAL (
            SELECT key, (i.shards->>(ord - 1)::int)::int AS shard
            FROM jsonb_array_elements_text(i.keys) WITH ORDINALITY AS t(key, ord)
        ) AS k
        WHERE i.cost > 0
        GROUP BY k.key, i.day, k.shard
    )
    INSERT INTO spend_counters AS c (scope_key, day, shard, spent_micros)
    SELECT scope_key, day, shard, micros FROM increments ORDER BY scope_key, day, shard
    ON CONFLICT (scope_key, day, shard) DO UPDATE SET spent_micros = c.spent_micros + EXCLUDED.spent_micros;
END
$$;
