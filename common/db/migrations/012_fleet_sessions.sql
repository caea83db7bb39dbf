-- The fleet page's figures from three small tables instead of every usage row of its window
-- (docs/console.md: 856 ms for 30 days of a 1,000-developer organisation when read from spend_usage).
--
--   fleet_client_days      per day x client (x shard): requests and the last request's time (the versions
--                          table's Requests and Last seen; a few rows a day). Every settle of one version
--                          would update the same row, so, like the organisation's spend counter, it is split
--                          into shards: a statement writes the shard of its connection (backend pid % 16), and
--                          concurrent settles on different connections do not queue on one row lock.
--   fleet_client_sessions  one row per client x sign-in session x user, with the day and time of the latest
--                          request of that session with that client. A window is always days first..today, so
--                          a session used that client in the window exactly when that day is >= first: the
--                          versions table's distinct users and sessions read O(sessions), not O(days x users).
--   fleet_sessions         one row per user x sign-in session (NULL: the user's requests made without one),
--                          holding the facts of its latest request (time, usage row id, client, managed-settings
--                          verdict): the sessions list, the verdict counts and "users, last seen" read these.
--
-- All three are functions of spend_usage, kept so by a statement-level trigger like 009's: the settle statements
-- (spend_settle / spend_settle_batch) are unchanged, and only rows a statement really inserted are added
-- (a replayed request key inserts nothing). Rows are upserted in key order, so concurrent batches lock them
-- in one order and cannot deadlock. "Latest" is the greatest (at, id), so equal times break ties the same
-- way every time. Retention deletes usage rows of old days and then, with the same cut (common.admin.retention),
-- the fleet rows of those days and those whose latest request was one of them: what is left is what the
-- remaining ledger says, and a "last seen" shown is a request the ledger still holds.
CREATE TABLE IF NOT EXISTS fleet_client_days (
    day      date NOT NULL,
    client   text,                    -- NULL: recorded without one (before migration 011)
    shard    smallint NOT NULL,       -- readers sum the shards
    requests bigint NOT NULL,
    last_at  timestamptz NOT NULL,
    CONSTRAINT fleet_client_days_key UNIQUE NULLS NOT DISTINCT (day, client, shard)
);

CREATE TABLE IF NOT EXISTS fleet_client_sessions (
    client     text,
    session_id text,                  -- NULL: requests without a sign-in session (counted as no session)
    user_email text NOT NULL,
    last_day   date NOT NULL,
    last_at    timestamptz NOT NULL,
    CONSTRAINT fleet_client_sessions_key UNIQUE NULLS NOT DISTINCT (client, session_id, user_email)
);
CREATE INDEX IF NOT EXISTS fleet_client_sessions_last_day ON fleet_client_sessions (last_day);

CREATE TABLE IF NOT EXISTS fleet_sessions (
    user_email     text NOT NULL,
    session_id     text,
    last_at        timestamptz NOT NULL,
    last_day       date NOT NULL,
    last_usage_id  bigint NOT NULL,   -- spend_usage.id of the latest request (the tie-break)
    client         text,
    settings_check text,
    CONSTRAINT fleet_sessions_key UNIQUE NULLS NOT DISTINCT (user_email, session_id)
);
-- The sessions list: newest first, a window is a prefix of this index.
CREATE INDEX IF NOT EXISTS fleet_sessions_recent ON fleet_sessions (last_at DESC, session_id) WHERE session_id IS NOT NULL;
-- A user's latest request: the first entry under their email.
CREATE INDEX IF NOT EXISTS fleet_sessions_user_latest ON fleet_sessions (user_email, last_at DESC, last_usage_id DESC);
-- Retention's cut.
CREATE INDEX IF NOT EXISTS fleet_sessions_last_day ON fleet_sessions (last_day);

CREATE OR REPLACE FUNCTION fleet_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fleet_client_days AS f (day, client, shard, requests, last_at)
    SELECT n.day, n.client, pg_backend_pid() % 16, count(*), max(n.at)
    FROM new_rows AS n
    GROUP BY n.day, n.client
    ORDER BY n.day, n.client
    ON CONFLICT (day, client, shard) DO UPDATE SET
        requests = f.requests + EXCLUDED.requests,
        last_at = greatest(f.last_at, EXCLUDED.last_at);
    INSERT INTO fleet_client_sessions AS c (client, session_id, user_email, last_day, last_at)
    SELECT n.client, n.session_id, n.user_email, max(n.day), max(n.at)
    FROM new_rows AS n
    GROUP BY n.client, n.session_id, n.user_email
    ORDER BY n.client, n.session_id, n.user_email
    ON CONFLICT (client, session_id, user_email) DO UPDATE SET
        last_day = greatest(c.last_day, EXCLUDED.last_day),
        last_at = greatest(c.last_at, EXCLUDED.last_at);
    INSERT INTO fleet_sessions AS s (user_email, session_id, last_at, last_day, last_usage_id, client, settings_check)
    SELECT DISTINCT ON (n.user_email, n.session_id) n.user_email, n.session_id, n.at, n.day, n.id, n.client,
        n.settings_check
    FROM new_rows AS n
    ORDER BY n.user_email, n.session_id, n.at DESC, n.id DESC
    ON CONFLICT (user_email, session_id) DO UPDATE SET
        last_at = EXCLUDED.last_at, last_day = EXCLUDED.last_day, last_usage_id = EXCLUDED.last_usage_id,
        client = EXCLUDED.client, settings_check = EXCLUDED.settings_check
    -- A batch settled late (a retry, a replay) must not make an older request the latest.
    WHERE (EXCLUDED.last_at, EXCLUDED.last_usage_id) > (s.last_at, s.last_usage_id);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS spend_usage_fleet ON spend_usage;
CREATE TRIGGER spend_usage_fleet AFTER INSERT ON spend_usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION fleet_add();

-- The rows already in the ledger (the trigger sees only new ones). One transaction: CREATE TRIGGER's lock
-- holds concurrent settles back until it commits, so no row is missed or counted twice.
INSERT INTO fleet_client_days (day, client, shard, requests, last_at)
SELECT day, client, 0, count(*), max(at) FROM spend_usage GROUP BY day, client;
INSERT INTO fleet_client_sessions (client, session_id, user_email, last_day, last_at)
SELECT client, session_id, user_email, max(day), max(at) FROM spend_usage GROUP BY client, session_id, user_email;
INSERT INTO fleet_sessions (user_email, session_id, last_at, last_day, last_usage_id, client, settings_check)
SELECT DISTINCT ON (user_email, session_id) user_email, session_id, at, day, id, client, settings_check
FROM spend_usage ORDER BY user_email, session_id, at DESC, id DESC;
