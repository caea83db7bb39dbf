-- Settle many requests in one statement (group commit).
--
-- The same effects as spend_settle, for a JSON array of requests: drop their
-- holds, write their usage rows (a replayed request key counts once), and add
-- the cost of the rows actually written to the per-day counters. The counter
-- increments are summed per row and applied in one globally sorted order, so
-- two batches (from two instances) always lock counter rows in the same
-- order and cannot deadlock.
CREATE OR REPLACE FUNCTION spend_settle_batch(p_items jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    DELETE FROM spend_holds
    WHERE reservation_id IN (SELECT (e->>'reservation')::uuid FROM jsonb_array_elements(p_items) AS e);
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_items) AS e WHERE (e->>'sweep')::boolean) THEN
        DELETE FROM spend_holds WHERE expires_at < clock_timestamp();
    END IF;
    WITH items AS (
        -- A request listed twice (a replay) is one item.
        SELECT DISTINCT ON ((e->>'reservation')::uuid) (e->>'reservation')::uuid AS reservation, e->>'request_id' AS request_id,
               (e->>'at')::timestamptz AS at, (e->>'day')::date AS day,
               e->>'user' AS user_email, e->>'sub' AS user_sub,
               ARRAY(SELECT jsonb_array_elements_text(e->'groups')) AS groups,
               e->>'model' AS model, e->>'upstream' AS upstream, e->>'upstream_model' AS upstream_model,
               e->>'billing_group' AS billing_group, e->>'endpoint' AS endpoint, (e->>'status')::integer AS status,
               (e->>'input')::bigint AS input, (e->>'output')::bigint AS output,
               (e->>'cache_read')::bigint AS cache_read, (e->>'cache_5m')::bigint AS cache_5m,
               (e->>'cache_1h')::bigint AS cache_1h, (e->>'cost')::bigint AS cost,
               e->'keys' AS keys, e->'shards' AS shards
        FROM jsonb_array_elements(p_items) AS e
    ), written AS (
        INSERT INTO spend_usage (request_key, request_id, at, day, user_email, user_sub, groups, model, upstream,
            upstream_model, billing_group, endpoint, status, input_tokens, output_tokens, cache_read_tokens,
            cache_write_5m_tokens, cache_write_1h_tokens, cost_micros)
        SELECT reservation, request_id, at, day, user_email, user_sub, groups, model, upstream, upstream_model,
            billing_group, endpoint, status, input, output, cache_read, cache_5m, cache_1h, cost
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
