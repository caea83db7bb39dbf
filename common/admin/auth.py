"""Who may call the admin API: admin keys (read or write) or an admin group's session.

Keys come from `admin.read_keys` / `admin.write_keys` (Secret Manager in
production) and are compared in constant time against every configured key.
A session JWT whose groups include one of `admin.admin_groups` acts as a
write admin; one of `admin.viewer_groups` (the read-only admin group, which the
console also uses) as a read admin: it may GET, and a write gets 403. Keys are
accepted as `x-api-key` or `Authorization: Bearer`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from flask import Request

from common.auth import sessions
from common.config import Config
from common.core.errors import GatewayError

Access = Literal["read", "write"]


@dataclass(frozen=True, slots=True)
class Admin:
    actor: str  # "key:<id>" or the session's email
    access: Access


def _credential(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    return sessions.bearer_token(request)


def authenticate(request: Request, cfg: Config, need: Access) -> Admin:
    """The admin calling, or 401/403 in Anthropic's envelope."""
    if cfg.admin is None:
        raise GatewayError(501, "The admin API is disabled: gateway.yaml has no `admin` section.", "not_supported")
    credential = _credential(request)
    if not credential:
        raise GatewayError(401, "Missing admin key: send it as x-api-key.", "authentication_error")
    found: Admin | None = None
    # Compare against every key, without an early exit, so timing says nothing.
    for access, keys in (("write", cfg.admin.write_keys), ("read", cfg.admin.read_keys)):
        for admin_key in keys:
            if hmac.compare_digest(admin_key.key.encode(), credential.encode()) and found is None:
                found = Admin(actor=f"key:{admin_key.id}", access=access)  # type: ignore[arg-type]
    if found is None and credential.count(".") == 2:
        try:
            identity = sessions.verify(cfg, credential)
        except sessions.InvalidToken:
            identity = None
        if identity is not None and sessions.is_revoked(identity):
            raise GatewayError(401, "This session was revoked. Sign in again.", "authentication_error")
        if identity is not None:
            granted = group_access(cfg, identity.groups)
            if granted is None:
                groups = [*cfg.admin.admin_groups, *cfg.admin.viewer_groups]
                raise GatewayError(
                    403,
                    f"{identity.email} is not in an admin group ({', '.join(groups) or 'none configured'}).",
                    "permission_error",
                )
            if need == "write" and granted != "write":
                raise GatewayError(
                    403,
                    f"{identity.email} is in a read-only admin group (admin.viewer_groups): it may read the admin API"
                    " but not change anything; changes need a member of admin.admin_groups or a write key.",
                    "permission_error",
                )
            found = Admin(actor=identity.email, access=granted)
    if found is None:
        raise GatewayError(401, "Invalid admin key.", "authentication_error")
    if need == "write" and found.access != "write":
        raise GatewayError(403, "This admin key is read-only; use a write key for changes.", "permission_error")
    return found


def group_access(cfg: Config, groups: tuple[str, ...] | list[str]) -> Access | None:
    """What a session's groups allow: write (`admin.admin_groups`), read (`admin.viewer_groups`), or nothing."""
    if cfg.admin is None:
        return None
    mine = {g.strip().lower() for g in groups}
    if mine.intersection(g.strip().lower() for g in cfg.admin.admin_groups):
        return "write"
    if mine.intersection(g.strip().lower() for g in cfg.admin.viewer_groups):
        return "read"
    return None
