-- Per-instance budget leases (docs/spend.md, "Leases"): a caller far from every cap
-- gets one hold of several requests' expected cost (the lease, its own uuid) instead
-- of one request's, and the instance admits the caller's next requests against it
-- with no round trip. Each of those requests' settle moves its cost from the lease's
-- hold to the counters in the same statement, so spent + held stays exact.
--
-- spend_reserve gains trailing parameters defaulting to "no lease", and a fourth
-- result column; a caller of the 8-argument form (an instance not yet updated)
-- gets the behaviour of migration 006 and still reads (spent, held, admitted).
DROP FUNCTION IF EXISTS spend_reserve(uuid, text[], date[], bigint[], date, bigint, integer, text[]);
CREATE OR REPLACE FUNCTION spend_reserve(
    p_reservation uuid, p_keys text[], p_starts date[], p_caps bigint[], p_today date,
    p_estimate bigint, p_ttl_seconds integer, p_lock_keys text[],
    p_lease uuid DEFAULT NULL,              -- the lease's hold id; NULL: a per-request hold
    p_lease_max bigint DEFAULT 0,           -- at most this much (a multiple of p_estimate)
    p_lease_headroom_pct integer DEFAULT 0, -- and at most this percent of each key's room left
    p_lease_below_pct integer DEFAULT 0,    -- and only while spent + held + lease <= this percent of each cap
    p_release uuid[] DEFAULT NULL           -- leases this instance is done with: their holds are dropped first
) RETURNS TABLE (spent bigint, held bigint, admitted boolean, leased bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    k text;
    i integer;
    n integer := coalesce(array_length(p_keys, 1), 0);
    s bigint;
    h bigint;
    v_spent bigint[] := '{}';
    v_held bigint[] := '{}';
    v_ok boolean := true;
    v_lease bigint := 0;
BEGIN
    IF p_release IS NOT NULL THEN
        DELETE FROM spend_holds WHERE reservation_id = ANY(p_release);
    END IF;
    FOREACH k IN ARRAY coalesce(p_lock_keys, '{}'::text[]) LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('spend:' || k, 0));
    END LOOP;
    IF p_lease IS NOT NULL AND p_lease_max > 0 THEN
        v_lease := p_lease_max;
    END IF;
    FOR i IN 1 .. n LOOP
        SELECT coalesce((SELECT sum(c.spent_micros) FROM spend_counters c
                         WHERE c.scope_key = p_keys[i] AND c.day >= p_starts[i] AND c.day <= p_today), 0),
               coalesce((SELECT sum(hl.amount_micros) FROM spend_holds hl
                         WHERE hl.scope_key = p_keys[i] AND hl.expires_at > clock_timestamp()), 0)
        INTO s, h;
        v_spent[i] := s;
        v_held[i] := h;
        IF s + h >= p_caps[i] THEN
            v_ok := false;
        END IF;
        IF v_lease > 0 THEN
            v_lease := least(v_lease, (p_caps[i] - s - h) * p_lease_headroom_pct / 100,
                             p_caps[i] * p_lease_below_pct / 100 - s - h);
        END IF;
    END LOOP;
    -- A lease smaller than two requests saves nothing: hold this request's estimate alone.
    IF v_lease < 2 * p_estimate THEN
        v_lease := 0;
    END IF;
    IF v_ok AND n > 0 THEN
        INSERT INTO spend_holds (reservation_id, scope_key, amount_micros, expires_at)
        SELECT DISTINCT CASE WHEN v_lease > 0 THEN p_lease ELSE p_reservation END, u.key,
               CASE WHEN v_lease > 0 THEN v_lease ELSE p_estimate END,
               clock_timestamp() + make_interval(secs => p_ttl_seconds)
        FROM unnest(p_keys) AS u(key)
        ON CONFLICT (reservation_id, scope_key) DO NOTHING;
    ELSE
        v_lease := 0;
    END IF;
    RETURN QUERY SELECT v_spent[j], v_held[j], v_ok, v_lease FROM generate_series(1, n) AS j;
END
$$;

-- spend_settle as in 011, with two trailing parameters defaulting to NULL (an
-- instance not yet updated calls the 25-argument form): p_lease, the lease the
-- request was admitted against, whose hold shrinks by the cost on the request's
-- first settle only (the usage row's key makes a replay count once, and shrink
-- nothing); and p_release, leases whose holds are dropped (idle, or done).
DROP FUNCTION IF EXISTS spend_settle(uuid, text, timestamptz, date, text, text, text[], text, text, text, text, text,
    integer, bigint, bigint, bigint, bigint, bigint, bigint, text[], smallint[], boolean, text, text, text);
CREATE OR REPLACE FUNCTION spend_settle(
    p_reservation uuid, p_request_id text, p_at timestamptz, p_day date,
    p_user text, p_sub text, p_groups text[], p_model text, p_upstream text, p_upstream_model text,
    p_billing_group text, p_endpoint text, p_status integer,
    p_input bigint, p_output bigint, p_cache_read bigint, p_cache_5m bigint, p_cache_1h bigint,
    p_cost bigint, p_keys text[], p_shards smallint[], p_sweep boolean,
    p_client text DEFAULT NULL, p_session_id text DEFAULT NULL, p_settings_check text DEFAULT NULL,
    p_lease uuid DEFAULT NULL, p_release uuid[] DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_written boolean;
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
    v_written := FOUND;
    IF v_written AND p_cost > 0 THEN
        INSERT INTO spend_counters AS c (scope_key, day, shard, spent_micros)
        SELECT t.k, p_day, t.s, p_cost FROM unnest(p_keys, p_shards) AS t(k, s)
        ON CONFLICT (scope_key, day, shard) DO UPDATE SET spent_micros = c.spent_micros + EXCLUDED.spent_micros;
        IF p_lease IS NOT NULL THEN
            UPDATE spend_holds SET amount_micros = greatest(0, amount_micros - p_cost) WHERE reservation_id = p_lease;
        END IF;
    END IF;
    IF p_release IS NOT NULL THEN
        DELETE FROM spend_holds WHERE reservation_id = ANY(p_release);
    END IF;
    RETURN v_written;
END
$$;

-- spend_settle_batch as in 011, with the same two effects per item: 'lease' (the
-- hold shrinks by the summed cost of the item's rows actually written) and
-- 'release' (a list of lease ids whose holds are dropped). Items without them
-- (an instance not yet updated) behave as before.
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
               e->>'client' AS client, e->>'session_id' AS session_id, e->>'settings_check' AS settings_check,
               (e->>'lease')::uuid AS lease
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
    ), shrunk AS (
        -- Data-modifying CTEs run to completion whether or not the query reads them.
        UPDATE spend_holds AS hl SET amount_micros = greatest(0, hl.amount_micros - d.micros)
        FROM (SELECT i.lease, sum(i.cost) AS micros FROM items AS i JOIN written AS w ON w.request_key = i.reservation
              WHERE i.lease IS NOT NULL AND i.cost > 0 GROUP BY i.lease) AS d
        WHERE hl.reservation_id = d.lease
        RETURNING 1
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
    DELETE FROM spend_holds WHERE reservation_id IN (
        SELECT r::uuid FROM jsonb_array_elements(p_items) AS e,
               jsonb_array_elements_text(CASE WHEN jsonb_typeof(e->'release') = 'array' THEN e->'release'
                                              ELSE '[]'::jsonb END) AS r);
END
$$;
