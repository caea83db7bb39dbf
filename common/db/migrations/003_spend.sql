-- Spend: limits set through the admin API, per-day counters, in-flight holds,
-- and the per-request usage ledger. Money is integer micro-dollars.

CREATE TABLE IF NOT EXISTS spend_limits (
    id            text PRIMARY KEY,              -- splim_<random>
    seq           bigserial NOT NULL UNIQUE,     -- stable order for cursor pagination
    scope_type    text NOT NULL CHECK (scope_type IN ('user', 'rbac_group', 'organization')),
    scope_id      text NOT NULL DEFAULT '',      -- lower-case email / group name / '' for the organisation
    period        text NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly')),
    amount_micros bigint NOT NULL CHECK (amount_micros >= 0),
    pooled        boolean NOT NULL DEFAULT false, -- rbac_group only: one budget shared by the members
    currency      text NOT NULL DEFAULT 'USD',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (scope_type, scope_id, period)
);

-- Settled spend per principal per UTC day. Keys: 'user:<email>', 'group:<name>', 'org'.
-- Shared keys (groups, org) spread their writes over shards so that no single
-- row serialises every request; readers sum the shards.
CREATE TABLE IF NOT EXISTS spend_counters (
    scope_key    text NOT NULL,
    day          date NOT NULL,
    shard        smallint NOT NULL DEFAULT 0,
    spent_micros bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (scope_key, day, shard)
);

-- In-flight reservations: one row per (request, capped key). A crashed
-- request's hold stops counting at expires_at and is swept later.
CREATE TABLE IF NOT EXISTS spend_holds (
    reservation_id uuid NOT NULL,
    scope_key      text NOT NULL,
    amount_micros  bigint NOT NULL,
    expires_at     timestamptz NOT NULL,
    PRIMARY KEY (reservation_id, scope_key)
);
CREATE INDEX IF NOT EXISTS spend_holds_key ON spend_holds (scope_key, expires_at);
CREATE INDEX IF NOT EXISTS spend_holds_expiry ON spend_holds (expires_at);

-- One row per metered request (idempotent on request_key, so a retried settle counts once).
CREATE TABLE IF NOT EXISTS spend_usage (
    id                    bigserial PRIMARY KEY,
    request_key           uuid NOT NULL UNIQUE,
    request_id            text,
    at                    timestamptz NOT NULL,
    day                   date NOT NULL,
    user_email            text NOT NULL,
    user_sub              text,
    groups                text[] NOT NULL DEFAULT '{}',
    model                 text NOT NULL,
    upstream              text NOT NULL,
    upstream_model        text,
    billing_group         text,
    endpoint              text NOT NULL DEFAULT 'messages',
    status                integer,
    input_tokens          bigint NOT NULL DEFAULT 0,
    output_tokens         bigint NOT NULL DEFAULT 0,
    cache_read_tokens     bigint NOT NULL DEFAULT 0,
    cache_write_5m_tokens bigint NOT NULL DEFAULT 0,
    cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
    cost_micros           bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_usage_day ON spend_usage (day);
CREATE INDEX IF NOT EXISTS spend_usage_user_day ON spend_usage (user_email, day);

-- Reserve `p_estimate` against every cap (p_keys[i] over days p_starts[i]..p_today
-- must stay below p_caps[i]) in one statement, so one round trip.
-- Keys in p_lock_keys (sorted by the caller: no deadlocks) are locked for the
-- transaction first; a VOLATILE plpgsql function takes a fresh snapshot for each
-- query in READ COMMITTED, so the sums below include every hold committed by a
-- request that held the lock before us. The organisation key is not locked (it
-- would serialise every request): its check is optimistic, see docs/spend.md.
CREATE OR REPLACE FUNCTION spend_reserve(
    p_reservation uuid, p_keys text[], p_starts date[], p_caps bigint[], p_today date,
    p_estimate bigint, p_ttl_seconds integer, p_lock_keys text[]
) RETURNS TABLE (spent bigint, held bigint, admitted boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    k text;
    i integer;
    n integer := coalesce(array_length(p_keys, 1), 0);
    v_spent bigint[] := '{}';
    v_held bigint[] := '{}';
    v_ok boolean := true;
BEGIN
    FOREACH k IN ARRAY coalesce(p_lock_keys, '{}'::text[]) LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('spend:' || k, 0));
    END LOOP;
    FOR i IN 1 .. n LOOP
        v_spent[i] := (SELECT coalesce(sum(c.spent_micros), 0) FROM spend_counters c
                       WHERE c.scope_key = p_keys[i] AND c.day >= p_starts[i] AND c.day <= p_today);
        v_held[i] := (SELECT coalesce(sum(h.amount_micros), 0) FROM spend_holds h
                      WHERE h.scope_key = p_keys[i] AND h.expires_at > clock_timestamp());
        IF v_spent[i] + v_held[i] >= p_caps[i] THEN
            v_ok := false;
        END IF;
    END LOOP;
    IF v_ok AND n > 0 THEN
        INSERT INTO spend_holds (reservation_id, scope_key, amount_micros, expires_at)
        SELECT DISTINCT p_reservation, u.key, p_estimate, clock_timestamp() + make_interval(secs => p_ttl_seconds)
        FROM unnest(p_keys) AS u(key)
        ON CONFLICT (reservation_id, scope_key) DO NOTHING;
    END IF;
    RETURN QUERY SELECT v_spent[j], v_held[j], v_ok FROM generate_series(1, n) AS j;
END
$$;

-- Settle one request in one statement: drop its holds, write its ledger row and,
-- the first time only (idempotent on p_reservation), add its cost to the counters
-- of p_keys/p_shards (sorted by the caller: no deadlocks).
CREATE OR REPLACE FUNCTION spend_settle(
    p_reservation uuid, p_request_id text, p_at timestamptz, p_day date,
    p_user text, p_sub text, p_groups text[], p_model text, p_upstream text, p_upstream_model text,
    p_billing_group text, p_endpoint text, p_status integer,
    p_input bigint, p_output bigint, p_cache_read bigint, p_cache_5m bigint, p_cache_1h bigint,
    p_cost bigint, p_keys text[], p_shards smallint[], p_sweep boolean
) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    DELETE FROM spend_holds WHERE reservation_id = p_reservation;
    IF p_sweep THEN
        DELETE FROM spend_holds WHERE expires_at < clock_timestamp();
    END IF;
    INSERT INTO spend_usage (request_key, request_id, at, day, user_email, user_sub, groups, model, upstream,
        upstream_model, billing_group, endpoint, status, input_tokens, output_tokens, cache_read_tokens,
        cache_write_5m_tokens, cache_write_1h_tokens, cost_micros)
    VALUES (p_reservation, p_request_id, p_at, p_day, p_user, p_sub, coalesce(p_groups, '{}'), p_model, p_upstream,
        p_upstream_model, p_billing_group, p_endpoint, p_status, p_input, p_output, p_cache_read,
        p_cache_5m, p_cache_1h, p_cost)
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
