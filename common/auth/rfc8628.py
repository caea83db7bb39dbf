"""RFC 8628: device authorization (/oauth/device_authorization) and the device grant.

Claude Code posts `surface=claude_code` and no client_id or scope: there is one
public client, so an absent client_id is accepted and unknown parameters are
ignored. The device_code is 256 random bits, stored only as its SHA-256, single
use; the user_code is 8 letters of the RFC's base-20 alphabet, shown XXXX-XXXX.

A poll is one statement (`store.poll_device_code`): it stamps `last_poll_at`,
reads the previous stamp (slow_down), and consumes an approved code
atomically, so a code yields tokens at most once even when polled
concurrently. This module decides what each state means; `store` holds the SQL.
"""

from __future__ import annotations

import secrets
from typing import Any

from authlib.oauth2.rfc6749.errors import AccessDeniedError, InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc8628 import AuthorizationPendingError, ExpiredTokenError, SlowDownError
from flask import Request, Response

from common import config
from common.auth import crypto, ratelimit, store
from common.auth.context import Caller, form, oauth_json
from common.core.errors import OAuthError

# A client polling up to this fraction of the interval early is not told to slow down
# (network jitter); faster than that is.
POLL_TOLERANCE = 0.8


def device_authorization(request: Request) -> Response:
    cfg = config.current()
    caller = Caller(request, cfg)
    params = form(request)  # parsed (and size-checked) but otherwise ignored: no client_id, no scope
    ratelimit.check(f"device_authorization:{caller.ip}", cfg.rate_limits.device_authorization, "sign-in attempts")
    device_code = crypto.random_token(32)
    for _ in range(5):  # a user_code collision among live codes is rare; retry on one
        user_code = crypto.new_user_code()
        if store.insert_device_code(
            crypto.digest(device_code),
            user_code,
            cfg.device.code_ttl_seconds,
            cfg.device.interval_seconds,
            caller.ip,
            caller.user_agent,
        ):
            break
    else:
        raise OAuthError("temporarily_unavailable", "Could not allocate a user code; try again.", status=503)
    if secrets.randbelow(50) == 0:  # opportunistic clean-up of codes long past expiry
        store.prune_device_codes()
    shown = crypto.display_user_code(user_code)
    caller.audit("device.authorization", actor="anonymous", target=shown, surface=params.get("surface"))
    base = cfg.public_url
    body: dict[str, Any] = {
        "device_code": device_code,
        "user_code": shown,
        "verification_uri": f"{base}/device",
        "verification_uri_complete": f"{base}/device?user_code={shown}",
        "expires_in": cfg.device.code_ttl_seconds,
        "interval": cfg.device.interval_seconds,
    }
    if cfg.login_notice:
        body["login_notice"] = cfg.login_notice
    return oauth_json(body)


def _error(exc: Any, description: str) -> OAuthError:
    return OAuthError(exc.error, description, status=400)


def poll(params: dict[str, str], caller: Caller) -> store.DevicePoll:
    """The device code, its approval consumed by this poll; or the OAuth error for its state."""
    device_code = params.get("device_code")
    if not device_code:
        raise _error(InvalidRequestError, "Missing device_code.")
    found = store.poll_device_code(crypto.digest(device_code), POLL_TOLERANCE)
    if found is None:
        raise _error(InvalidGrantError, "Unknown device_code; start a new sign-in with /login.")
    before, user_code = found.before, found.user_code
    if before == "consumed":
        caller.audit("token.refused", actor="anonymous", target=crypto.display_user_code(user_code), reason="replayed")
        raise _error(InvalidGrantError, "This device_code was already used; start a new sign-in with /login.")
    if found.expired:
        raise _error(ExpiredTokenError, "The sign-in code expired; start a new sign-in with /login.")
    if before == "denied":
        raise _error(AccessDeniedError, "The sign-in was denied in the browser.")
    if found.too_fast:
        raise _error(SlowDownError, "Polling too fast; wait the interval between requests.")
    if before == "pending":
        raise _error(AuthorizationPendingError, "Waiting for the user to approve the sign-in in the browser.")
    if found.after != "consumed" or not isinstance(found.identity, dict):
        raise _error(InvalidGrantError, "This device_code cannot be used.")
    return found
