-- Budget alerts (common/alerts): each (cap, period, threshold) fires once across
-- every instance: the first instance to insert the event row owns it (the
-- UNIQUE key is the insert-once guard); deliveries are one row per destination,
-- retried with backoff by whichever instance leases them.
CREATE TABLE IF NOT EXISTS alert_events (
    id            bigserial PRIMARY KEY,
    cap_id        text NOT NULL,         -- scope:scope_id:counter key[:pooled], see alerts.cap_id()
    scope_type    text NOT NULL,
    scope_id      text NOT NULL DEFAULT '',
    cap_key       text NOT NULL,         -- the spend counter key ('user:<email>', 'group:<g>', 'org')
    period        text NOT NULL,
    period_start  date NOT NULL,
    threshold     integer NOT NULL,      -- percent of the cap
    cap_micros    bigint NOT NULL,
    spent_micros  bigint NOT NULL,       -- settled spend when the threshold was seen crossed
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cap_id, period, period_start, threshold)
);
CREATE INDEX IF NOT EXISTS alert_events_created ON alert_events (created_at);

CREATE TABLE IF NOT EXISTS alert_deliveries (
    event_id        bigint NOT NULL REFERENCES alert_events (id) ON DELETE CASCADE,
    destination     text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    last_error      text,
    delivered_at    timestamptz,
    PRIMARY KEY (event_id, destination)
);
CREATE INDEX IF NOT EXISTS alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE status = 'pending';

-- The console's recent-requests and per-model views read spend_usage by user and time.
CREATE INDEX IF NOT EXISTS spend_usage_user_at ON spend_usage (user_email, at DESC);
