-- Daily rollups of the usage ledger: spend per day x user x model x groups, so
-- the cost report (and the console) read ~3 rows per user and day instead of
-- every request. `groups` is the caller's group list as the usage rows hold it,
-- so grouping by group unnests it exactly as the raw report did (a request
-- counts once in each of its groups, once in the total).
--
-- Maintained by a statement-level trigger on spend_usage: the settle stays one
-- statement (spend_settle / spend_settle_batch are unchanged), and only the rows
-- that statement really inserted (a replayed request key inserts nothing) are
-- added. Rows are upserted in key order, so two batches lock them in one order
-- and cannot deadlock. Retention deletes usage rows long before their rollups
-- (retention.spend_rollup_months), and nothing else deletes or updates usage rows.
CREATE TABLE IF NOT EXISTS spend_daily (
    day                   date NOT NULL,
    user_email            text NOT NULL,
    model                 text NOT NULL,
    groups                text[] NOT NULL,
    requests              bigint NOT NULL,
    errors                bigint NOT NULL,     -- status >= 400 or unknown, as the console counts them
    input_tokens          bigint NOT NULL,
    output_tokens         bigint NOT NULL,
    cache_read_tokens     bigint NOT NULL,
    cache_write_5m_tokens bigint NOT NULL,
    cache_write_1h_tokens bigint NOT NULL,
    cost_micros           bigint NOT NULL,
    PRIMARY KEY (day, user_email, model, groups)
);

CREATE OR REPLACE FUNCTION spend_daily_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO spend_daily AS d (day, user_email, model, groups, requests, errors, input_tokens, output_tokens,
        cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cost_micros)
    SELECT n.day, n.user_email, n.model, n.groups, count(*), count(*) FILTER (WHERE n.status >= 400 OR n.status IS NULL),
        sum(n.input_tokens), sum(n.output_tokens), sum(n.cache_read_tokens), sum(n.cache_write_5m_tokens),
        sum(n.cache_write_1h_tokens), sum(n.cost_micros)
    FROM new_rows AS n
    GROUP BY n.day, n.user_email, n.model, n.groups
    ORDER BY n.day, n.user_email, n.model, n.groups
    ON CONFLICT (day, user_email, model, groups) DO UPDATE SET
        requests = d.requests + EXCLUDED.requests,
        errors = d.errors + EXCLUDED.errors,
        input_tokens = d.input_tokens + EXCLUDED.input_tokens,
        output_tokens = d.output_tokens + EXCLUDED.output_tokens,
        cache_read_tokens = d.cache_read_tokens + EXCLUDED.cache_read_tokens,
        cache_write_5m_tokens = d.cache_write_5m_tokens + EXCLUDED.cache_write_5m_tokens,
        cache_write_1h_tokens = d.cache_write_1h_tokens + EXCLUDED.cache_write_1h_tokens,
        cost_micros = d.cost_micros + EXCLUDED.cost_micros;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS spend_usage_daily ON spend_usage;
CREATE TRIGGER spend_usage_daily AFTER INSERT ON spend_usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION spend_daily_add();

-- The rows already in the ledger (the trigger sees only new ones).
INSERT INTO spend_daily (day, user_email, model, groups, requests, errors, input_tokens, output_tokens,
    cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cost_micros)
SELECT day, user_email, model, groups, count(*), count(*) FILTER (WHERE status >= 400 OR status IS NULL),
    sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_write_5m_tokens),
    sum(cache_write_1h_tokens), sum(cost_micros)
FROM spend_usage GROUP BY day, user_email, model, groups;
