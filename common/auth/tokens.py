"""The token endpoint (/oauth/token): the device grant and the refresh grant.

A successful device grant opens a session family (a row in `auth_sessions`,
its id in every access token as `sid`) with its first refresh token. Refresh
tokens are opaque (256 bits), stored hashed, and rotated on every use.
Each refresh re-checks the user at the IdP (its refresh token, the
claims and groups it returns, then our gates): a user removed, disabled or out
of the allowed groups gets `401 invalid_grant`, which makes Claude Code sign in
again — the off-boarding hook. An IdP that gives no answer (down, 5xx) is
not a refusal: `503 temporarily_unavailable`, and the session, its access
token and the presented refresh token all stay valid for the retry.

Concurrency: the one request holding a token's lease (`store.claim_refresh_token`)
re-checks and rotates; a concurrent one waits for that rotation and returns
the same successor, as does any repeat within `session.refresh_grace_seconds`
(two Claude Code processes sharing a credential file, a retry after a
timeout). A rotated token presented after that window leaked: the whole
family is revoked.
"""

from __future__ import annotations

import json
import time
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


# A lease outlives the IdP calls one refresh makes (oidc.TIMEOUT each); a waiter gives up sooner
# with a 503 whose retry then finds the successor within the grace window.
LEASE_SECONDS = 60.0
WAIT_SECONDS = 15.0
WAIT_STEP_SECONDS = 0.1
SUCCESSOR_PURPOSE = b"refresh-successor"
RETRY_AFTER_SECONDS = 5


def _refused(caller: Caller, actor: str, session_id: str | None, reason: str, message: str) -> OAuthError:
    caller.audit("token.refused", actor=actor, target=session_id, grant="refresh_token", reason=reason)
    return OAuthError(InvalidGrantError.error, message, status=401)


def _unavailable(caller: Caller, actor: str, session_id: str, reason: str, message: str) -> OAuthError:
    """A temporary refusal: Claude Code retries a 503, and nothing of the session changed."""
    caller.audit("token.unavailable", actor=actor, target=session_id, grant="refresh_token", reason=reason)
    return OAuthError("temporarily_unavailable", message, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _claim(cfg: Config, token_hash: str, lease: str) -> store.RefreshClaim | None:
    """Claim the token, waiting (bounded) while another request holds its lease."""
    grace = cfg.session.refresh_grace_seconds
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        claim = store.claim_refresh_token(token_hash, lease, LEASE_SECONDS, grace)
        if claim is None or claim.state != "busy" or claim.revoked or time.monotonic() >= deadline:
            return claim
        time.sleep(WAIT_STEP_SECONDS)


def _successor(cfg: Config, sealed: str | None) -> dict[str, Any] | None:
    """The response that rotated a token (kept sealed for the grace window), with its remaining lifetime."""
    opened = crypto.unseal(cfg, sealed, SUCCESSOR_PURPOSE) if sealed else None
    if opened is None:
        return None
    body: dict[str, Any] = json.loads(opened)
    expires_at = int(body.pop("expires_at"))
    body["expires_in"] = max(1, expires_at - int(time.time()))
    return body


def refresh_grant(cfg: Config, params: dict[str, str], caller: Caller) -> Response:
    presented = params.get("refresh_token")
    if not presented:
        raise OAuthError(InvalidRequestError.error, "Missing refresh_token.")
    token_hash, lease = crypto.digest(presented), crypto.random_token(18)
    claim = _claim(cfg, token_hash, lease)
    if claim is None:
        raise _refused(caller, "anonymous", None, "unknown", "Unknown refresh token; sign in again with /login.")
    session_id, email = claim.session_id, claim.email
    if claim.revoked:
        raise _refused(caller, email, session_id, "revoked", "This session was revoked; sign in again with /login.")
    if claim.expired:
        raise _refused(caller, email, session_id, "expired", "This session expired; sign in again with /login.")
    if claim.state == "busy":
        raise _unavailable(
            caller, email, session_id, "refresh_in_progress", "Another refresh of this token is in progress; retry."
        )
    if claim.state == "rotated":
        successor = _successor(cfg, claim.successor_sealed)
        if successor is not None:
            caller.audit("token.refreshed", actor=email, target=session_id, repeat=True)
            return oauth_json(successor)
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
    try:
        return _rotate(cfg, caller, claim, token_hash, lease)
    except BaseException:
        # Whatever went wrong, the presented token must stay usable (a revocation already stops it).
        store.release_refresh_claim(token_hash, lease)
        raise


def _rotate(cfg: Config, caller: Caller, claim: store.RefreshClaim, token_hash: str, lease: str) -> Response:
    """Re-check the user at the IdP and rotate; this request holds the token's lease."""
    session_id, email, sealed = claim.session_id, claim.email, claim.sealed_idp_refresh
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
    except oidc.IdpUnavailable as exc:
        logs.warning("refresh deferred: the IdP did not answer", session_id=session_id, reason=str(exc))
        raise _unavailable(
            caller,
            email,
            session_id,
            "idp_unavailable",
            "The identity provider cannot be reached to re-check your account; retry shortly.",
        ) from None
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
    access_token, ttl = sessions.issue(
        cfg, sub=user.sub, email=user.email, groups=list(user.groups), session_id=session_id
    )
    body: dict[str, Any] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "refresh_token": new_refresh,
        "email": user.email,
    }
    successor = crypto.seal(
        cfg, json.dumps({**body, "expires_at": int(time.time()) + ttl, "expires_in": None}), SUCCESSOR_PURPOSE
    )
    rotated = store.rotate_session(
        session_id,
        user.sub,
        user.email,
        user.groups,
        crypto.seal(cfg, result.refresh_token) if result.refresh_token else sealed,
        int(cfg.session.refresh_ttl_days * 86400),
        token_hash,
        lease,
        successor,
        cfg.session.refresh_grace_seconds,
        crypto.digest(new_refresh),
    )
    if not rotated:
        raise _refused(caller, email, session_id, "revoked", "This session was revoked; sign in again with /login.")
    caller.audit("token.refreshed", actor=user.email, target=session_id, groups=list(user.groups))
    return oauth_json(body)
