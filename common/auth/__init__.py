"""Sign-in and sessions: the OAuth 2.0 authorization server Claude Code's `/login` speaks, the OIDC client side, session JWTs and revocation.

Modules are named after the RFC they implement where one applies: `rfc8414`
discovery, `rfc8628` device authorization and the device grant, `rfc7009`
revocation; `tokens` is the token endpoint (device grant, refresh rotation),
`verification` the browser page at /device, `oidc` the IdP client (authlib),
`claims` identity, groups and the allow gates, `crypto` hashing and sealing,
`sessions` session JWTs and `authenticate()` (the one bearer check),
`revocation` `revoke()` and the per-instance revoked-session check bearer
endpoints run, `store` all SQL of the sign-in tables (device codes, session
families, refresh tokens), `ratelimit` the per-address counters (their own
table and SQL), `context` what every sign-in handler reads from a request.
The protocol modules decide; only `store` and `ratelimit` touch the database.
"""

__all__ = [
    "claims",
    "context",
    "crypto",
    "oidc",
    "ratelimit",
    "revocation",
    "rfc7009",
    "rfc8414",
    "rfc8628",
    "sessions",
    "store",
    "tokens",
    "verification",
]
