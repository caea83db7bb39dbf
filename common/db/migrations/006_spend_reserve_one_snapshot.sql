-- spend_reserve read a key's settled spend and its holds in two queries, hence
-- two snapshots (READ COMMITTED, VOLATILE): a settle committing between them
-- (its hold gone, its cost not yet in the counters as first read) was counted by
-- neither, so a reserve could pass a cap by that request's cost. Both sums are
-- now one query per key: one snapshot, the settle seen whole or not at all.
-- Same signature, result and locking as migration 003.
CREATE OR REPLACE FUNCTION spend_reserve(
    p_reservation uuid, p_keys text[], p_starts date[], p_caps bigint[], p_today date,
    p_estimate bigint, p_ttl_seconds integer, p_lock_keys text[]
) RETURNS TABLE (spent bigint, held bigint, admitted boolean)
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
BEGIN
    FOREACH k IN ARRAY coalesce(p_lock_keys, '{}'::text[]) LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('spend:' || k, 0));
    END LOOP;
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
