"""RFC 7009 token revocation at /oauth/revoke: an access or a refresh token; always 200.

Either kind ends the whole session family it belongs to (so a revoked bearer's
next request is refused within the revocation cache's staleness bound, and its
refresh token is dead at once). Unknown, malformed or foreign tokens are
ignored, as §2.2 asks: the answer never tells whether a token existed.
"""

from __future__ import annotations

from flask import Request, Response

from common import config
from common.auth import crypto, ratelimit, sessions
from common.auth import store as session_store
from common.auth.context import Caller, form, oauth_json
from common.config import Config
from common.db import pool as store


def _session_of(cfg: Config, token: str, hint: str | None) -> tuple[str | None, str | None]:
    """(session id, email) of the token, trying the hinted kind first."""
    kinds = ["refresh_token", "access_token"]
    if hint == "access_token":
        kinds.reverse()
    for kind in kinds:
        if kind == "access_token" and token.count(".") == 2:
            try:
                ident = sessions.verify(cfg, token)
            except sessions.InvalidToken:
                continue
            return ident.session_id, ident.email
        if kind == "refresh_token":
            rows = store.get().execute(
                "SELECT s.id, s.email FROM refresh_tokens r JOIN auth_sessions s ON s.id = r.session_id"
                " WHERE r.token_hash = %s",
                (crypto.digest(token),),
            )
            if rows:
                return rows[0][0], rows[0][1]
    return None, None


def revoke(request: Request) -> Response:
    cfg = config.current()
    caller = Caller(request, cfg)
    params = form(request)
    ratelimit.check(f"token:{caller.ip}", cfg.rate_limits.token, "token requests")
    token = params.get("token")
    if token:
        session_id, email = _session_of(cfg, token, params.get("token_type_hint"))
        if session_id:
            session_store.revoke(
                session_id=session_id,
                actor=email or "anonymous",
                reason="client_revocation",
                client_ip=caller.ip,
                user_agent=caller.user_agent,
            )
    return oauth_json({})
