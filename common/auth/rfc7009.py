"""RFC 7009 token revocation at /oauth/revoke: an access or a refresh token; always 200.

Either kind ends the whole session family it belongs to (so a revoked bearer's
next request is refused within the revocation cache's staleness bound, and its
refresh token is dead at once). Unknown, malformed or foreign tokens are
ignored, as §2.2 asks: the answer never tells whether a token existed.
"""

from __future__ import annotations

from flask import Request, Response

from common import config
from common.auth import crypto, ratelimit, revocation, sessions, store
from common.auth.context import Caller, form, oauth_json
from common.config import Config


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
            found = store.session_of_refresh_token(crypto.digest(token))
            if found:
                return found
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
            revocation.revoke(
                session_id=session_id,
                actor=email or "anonymous",
                reason="client_revocation",
                client_ip=caller.ip,
                user_agent=caller.user_agent,
            )
    return oauth_json({})
