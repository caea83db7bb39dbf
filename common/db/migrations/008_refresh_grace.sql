-- Refresh rotation that survives IdP blips and concurrent refreshes (issue 14, findings 9 and 10).
--
-- claim / claimed_at: a lease taken by the one request re-checking the user at the IdP, so two
--   requests presenting the same refresh token never both refresh at the IdP (whose own refresh
--   token rotates too); a request that fails temporarily releases it and the token stays usable.
-- successor_sealed: the response that rotated this token (access and refresh token, AES-GCM
--   sealed like the IdP refresh token), served again to a repeat within session.refresh_grace_seconds
--   of `used_at`; cleared once that window has passed.
ALTER TABLE refresh_tokens ADD COLUMN IF NOT EXISTS claim text;
ALTER TABLE refresh_tokens ADD COLUMN IF NOT EXISTS claimed_at timestamptz;
ALTER TABLE refresh_tokens ADD COLUMN IF NOT EXISTS successor_sealed text;
