-- Sign-in: device codes, session families, refresh tokens. Secrets are stored hashed
-- (SHA-256 of a >=256-bit random value) or encrypted (the IdP refresh token).

CREATE TABLE IF NOT EXISTS device_codes (
    device_code_hash text PRIMARY KEY,          -- sha256 hex of the device_code
    user_code        text NOT NULL UNIQUE,      -- normalized: 8 letters, no dash, upper case
    status           text NOT NULL DEFAULT 'pending',  -- pending | approved | denied | consumed
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    interval_seconds integer NOT NULL,
    last_poll_at     timestamptz,
    client_ip        text,
    user_agent       text,
    identity         jsonb,                     -- set on approval: sub, email, groups
    idp_refresh      text,                      -- encrypted IdP refresh token (approval)
    session_id       text                       -- set when consumed
);
CREATE INDEX IF NOT EXISTS device_codes_expires ON device_codes (expires_at);

-- One row per sign-in ("session family"): every access and refresh token of it carries its id.
CREATE TABLE IF NOT EXISTS auth_sessions (
    id              text PRIMARY KEY,           -- the JWT's `sid`
    sub             text NOT NULL,
    email           text NOT NULL,
    groups          jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_refresh_at timestamptz,
    expires_at      timestamptz NOT NULL,       -- refresh_ttl_days after the last refresh
    revoked_at      timestamptz,
    revoked_by      text,
    revoke_reason   text,
    client_ip       text,
    user_agent      text,
    idp_refresh     text                        -- encrypted IdP refresh token (never logged)
);
CREATE INDEX IF NOT EXISTS auth_sessions_email ON auth_sessions (lower(email), created_at DESC);
CREATE INDEX IF NOT EXISTS auth_sessions_revoked ON auth_sessions (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash  text PRIMARY KEY,               -- sha256 hex of the opaque refresh token
    session_id  text NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz                     -- set on rotation; presenting it again revokes the family
);
CREATE INDEX IF NOT EXISTS refresh_tokens_session ON refresh_tokens (session_id);
