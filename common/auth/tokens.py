"""The token endpoint (/oauth/token): the device grant and the refresh grant.

A successful device grant opens a session family (a row in `auth_sessions`,
its id in every access token as `sid`) with its first refresh token. Refresh
tokens are opaque (256 bits), stored hashed, and rotated on every use;
presenting a rotated one again means it leaked, so the whole family is
revoked. Each refresh re-checks the user at the IdP (its refresh token, the
claims and groups it returns, then our gates): a user removed, disabled or out
of the allowed groups gets `401 invalid_grant`, which makes Claude Code sign in
again — the off-boarding hook.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, UnsupportedGrantTypeError
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE
from flask import Request, Response

from common import config
from common.auth import claims, crypto, oidc, ratelimit, revocation, rfc8628, sessions, store
from common.auth.context import Caller, form, oauth_json
from common.config import Config
from common.core import logs
from common.core.errors import OAuthError


def token(request: Request) -> Response:
    cfg = config.current()
    caller = Caller(request, cfg)
    params = form(request)
    ratelimit.check(f"token:{caller.ip}", cfg.rate_limits.token, "token requests")
    grant_type = params.get("grant_type")
    if not grant_type:
        raise OAuthError(InvalidRequestError.error, "Missing grant_type.")
    if grant_type == DEVICE_CODE_GRANT_TYPE:
        return device_grant(cfg, params, caller)
    if grant_type == "refresh_token":
        return refresh_grant(cfg, params, caller)
    raise OAuthError(
        UnsupportedGrantTypeError.error,
        f"grant_type must be {DEVICE_CODE_GRANT_TYPE} or refresh_token.",
    )


def _response(cfg: Config, user: dict[str, Any], session_id: str, refresh_token: str) -> Response:
    access_token, ttl = sessions.issue(
        cfg, sub=user["sub"], email=user["email"], groups=list(user["groups"]), session_id=session_id
    )
    return oauth_json(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh_token,
            "email": user["email"],
        }
    )


def device_grant(cfg: Config, params: dict[str, str], caller: Caller) -> Response:
    approved = rfc8628.poll(params, caller)
    user = approved.identity
    session_id = "ses_" + crypto.random_token(18)
    refresh_token = crypto.random_token(32)
    store.open_session(
        session_id,
        user["sub"],
        user["email"],
        user["groups"],
        int(cfg.session.refresh_ttl_days * 86400),
        caller.ip,
        caller.user_agent,
        approved.sealed_idp_refresh,
        crypto.digest(refresh_token),
    )
    caller.audit(
        "token.issued",
        actor=user["email"],
        target=session_id,
        grant="device_code",
        user_code=crypto.display_user_code(approved.user_code),
    )
    return _response(cfg, user, session_id, refresh_token)


def _refused(caller: Caller, actor: str, session_id: str | None, reason: str, message: str) -> OAuthError:
    caller.audit("token.refused", actor=actor, target=session_id, grant="refresh_token", reason=reason)
    return OAuthError(InvalidGrantError.error, message, status=401)


def refresh_grant(cfg: Config, params: dict[str, str], caller: Caller) -> Response:
    presented = params.get("refresh_token")
    if not presented:
        raise OAuthError(InvalidRequestError.error, "Missing refresh_token.")
    claim = store.claim_refresh_token(crypto.digest(presented))
    if claim is None:
        raise _refused(caller, "anonymous", None, "unknown", "Unknown refresh token; sign in again with /login.")
    session_id, email, sealed = claim.session_id, claim.email, claim.sealed_idp_refresh
    if claim.replayed:
        revocation.revoke(
            session_id=session_id,
            actor="system",
            reason="refresh_token_reuse",
            client_ip=caller.ip,
            user_agent=caller.user_agent,
        )
        raise _refused(
            caller,
            email,
            session_id,
            "reuse",
            "This refresh token was already used; the session is revoked. Sign in again with /login.",
        )
    if claim.revoked:
        raise _refused(caller, email, session_id, "revoked", "This session was revoked; sign in again with /login.")
    if claim.expired:
        raise _refused(caller, email, session_id, "expired", "This session expired; sign in again with /login.")
    idp_refresh = crypto.unseal(cfg, sealed) if sealed else None
    if idp_refresh is None:
        revocation.revoke(session_id=session_id, actor="system", reason="no_idp_refresh_token")
        raise _refused(
            caller,
            email,
            session_id,
            "no_idp_refresh_token",
            "The identity provider gave no refresh token to re-check you with; sign in again with /login.",
        )
    try:
        result = oidc.refresh(cfg, idp_refresh)
        user = claims.user_from_claims(cfg, result.claims)
    except (oidc.IdpError, claims.Refused) as exc:
        logs.info("refresh refused by the IdP or the gates", session_id=session_id, reason=str(exc))
        revocation.revoke(session_id=session_id, actor="system", reason="idp_refused")
        raise _refused(
            caller,
            email,
            session_id,
            "idp_refused",
            "Your account is no longer allowed to use this gateway; sign in again with /login.",
        ) from None
    new_refresh = crypto.random_token(32)
    rotated = store.rotate_session(
        session_id,
        user.sub,
        user.email,
        user.groups,
        crypto.seal(cfg, result.refresh_token) if result.refresh_token else sealed,
        int(cfg.session.refresh_ttl_days * 86400),
        crypto.digest(new_refresh),
    )
    if not rotated:
        raise _refused(caller, email, session_id, "revoked", "This session was revoked; sign in again with /login.")
    caller.audit("token.refreshed", actor=user.email, target=session_id, groups=list(user.groups))
    return _response(cfg, {"sub": user.sub, "email": user.email, "groups": list(user.groups)}, session_id, new_refresh)
