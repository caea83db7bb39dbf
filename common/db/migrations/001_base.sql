-- Foundation tables shared by every function.

-- Audit log: sign-in events and admin changes (never tokens).
CREATE TABLE IF NOT EXISTS audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,          -- email, admin key id, or 'system'
    action      text NOT NULL,          -- e.g. device.approved, spend_limit.update
    target      text,                   -- what it acted on
    client_ip   text,
    user_agent  text,
    before      jsonb,
    after       jsonb,
    detail      jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at DESC);
CREATE INDEX IF NOT EXISTS audit_log_action ON audit_log (action, at DESC);

-- Fixed-window rate-limit counters, shared by every instance.
CREATE TABLE IF NOT EXISTS rate_limits (
    bucket       text NOT NULL,         -- e.g. device_verify:203.0.113.7
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
