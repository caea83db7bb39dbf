"""Session JWTs: the bearer every endpoint after sign-in accepts.

HS256 with keys from `session.jwt_secret` (a string or a list: the first signs,
all verify, so a key can rotate). The header's `kid` is the first 8 bytes of
SHA-256(key) in hex, the same convention as Anthropic's own gateway. Claims:
`iss` (the public origin), `aud`, `sub`, `email`, `groups`, `iat`, `exp`,
`jti`, `sid` (the session family, for revocation). Verification pins the
algorithm and requires every claim. `authenticate()` is the one function every
bearer endpoint calls.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
from flask import Request

from common import config
from common.config import Config
from common.core.errors import GatewayError
from common.core.identity import Identity

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "email", "groups", "iat", "exp", "jti"]
LEEWAY_SECONDS = 30


def key_id(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def issue(
    cfg: Config,
    *,
    sub: str,
    email: str,
    groups: list[str] | tuple[str, ...],
    session_id: str | None = None,
    ttl_seconds: int | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """A signed session token and its lifetime in seconds."""
    now = int(time.time())
    ttl = ttl_seconds if ttl_seconds is not None else int(cfg.session.ttl_hours * 3600)
    claims: dict[str, Any] = {
        "iss": cfg.public_url,
        "aud": cfg.session.audience,
        "sub": sub,
        "email": email,
        "groups": list(groups),
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(16),
    }
    if session_id:
        claims["sid"] = session_id
    if extra:
        claims.update(extra)
    signing_key = cfg.session.secrets[0]
    token = jwt.encode(claims, signing_key, algorithm=ALGORITHM, headers={"kid": key_id(signing_key)})
    return token, ttl


class InvalidToken(Exception):
    pass


# Verified tokens, per instance and per config version (`config.derive`): a
# client sends the same token on every request until it refreshes, and HMAC +
# claim checks cost more than a dict lookup. A reload (key rotation, audience
# change) starts an empty cache, so nothing verified under old keys survives
# it; expiry is re-checked on every hit.
_VERIFIED_MAX = 20_000


def _verified_tokens(cfg: Config) -> dict[str, Identity]:
    return {}


def verify(cfg: Config, token: str) -> Identity:
    """Verify a session JWT: algorithm pinned, key by `kid`, every claim checked."""
    verified = config.derive(cfg, _verified_tokens)
    identity = verified.get(token)
    if identity is not None:
        if identity.expires_at is not None and identity.expires_at + LEEWAY_SECONDS > time.time():
            return identity
        verified.pop(token, None)
    identity = _verify(cfg, token)
    if len(verified) >= _VERIFIED_MAX:
        verified.clear()
    verified[token] = identity
    return identity


def _verify(cfg: Config, token: str) -> Identity:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("malformed token") from None
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("unexpected signing algorithm")
    kid = header.get("kid")
    keys = {key_id(s): s for s in cfg.session.secrets}
    secret = keys.get(kid) if isinstance(kid, str) else None
    if secret is None:
        raise InvalidToken("unknown signing key")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=cfg.session.audience,
            issuer=cfg.public_url,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    groups = claims.get("groups")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise InvalidToken("groups claim is not a list of strings")
    if not isinstance(claims.get("email"), str) or not isinstance(claims.get("sub"), str):
        raise InvalidToken("sub and email must be strings")
    return Identity(
        sub=claims["sub"],
        email=claims["email"],
        groups=tuple(groups),
        session_id=claims.get("sid"),
        jti=claims.get("jti"),
        expires_at=int(claims["exp"]),
        claims=claims,
    )


# Revocation: `revocation.install()` registers the checker, once per process
# (each function's main.py); until it does, nothing is revoked. The checker must
# answer from a per-instance cache so a request costs no extra database round trip.
_revocation_check: Callable[[Identity], bool] | None = None
_lock = threading.Lock()


def set_revocation_check(check: Callable[[Identity], bool] | None) -> None:
    global _revocation_check
    with _lock:
        _revocation_check = check


def is_revoked(identity: Identity) -> bool:
    """Was this session revoked? Answered from the registered per-instance cache."""
    check = _revocation_check
    return check is not None and check(identity)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = request.headers.get("x-api-key")
    return api_key.strip() if api_key else None


def authenticate(request: Request, cfg: Config) -> Identity:
    """The verified caller of a bearer endpoint, or 401 `authentication_error`."""
    token = bearer_token(request)
    if token is None:
        raise GatewayError(
            401,
            "Missing bearer token. Sign in to the gateway with /login in Claude Code.",
            "authentication_error",
        )
    try:
        identity = verify(cfg, token)
    except InvalidToken as exc:
        raise GatewayError(
            401,
            f"Invalid session token ({exc}). Sign in again with /login.",
            "authentication_error",
        ) from None
    if is_revoked(identity):
        raise GatewayError(401, "This session was revoked. Sign in again with /login.", "authentication_error")
    return identity
