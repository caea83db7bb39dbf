"""Admin API for sign-in sessions: list (`GET /v1/organizations/sessions`) and revoke.

Anthropic's list envelope: `{"data": [...], "has_more", "first_id", "last_id", "next_page"}`.
Revocation: `POST /v1/organizations/sessions/revoke` with `{"email"}` or `{"session_id"}`,
or `DELETE /v1/organizations/sessions/<id>`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Request, Response

from common import config
from common.admin import api
from common.admin import auth as admin_auth
from common.auth import revocation, store
from common.core.errors import GatewayError
from common.http import clientip, json_response


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def render(row: store.SessionRow) -> dict[str, Any]:
    """A session as the admin API and the console show it: ISO times, never its tokens."""
    return {
        "id": row.id,
        "type": "session",
        "sub": row.sub,
        "email": row.email,
        "groups": row.groups,
        "created_at": _iso(row.created_at),
        "last_refreshed_at": _iso(row.last_refresh_at),
        "expires_at": _iso(row.expires_at),
        "revoked_at": _iso(row.revoked_at),
        "revoked_by": row.revoked_by,
        "revoke_reason": row.revoke_reason,
        "client_ip": row.client_ip,
        "user_agent": row.user_agent,
    }


def list_sessions(request: Request) -> Response:
    cfg = config.current()
    admin_auth.authenticate(request, cfg, "read")
    api.check_args(request)
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        raise GatewayError(400, "limit must be an integer between 1 and 1000.") from None
    if not 1 <= limit <= 1000:
        raise GatewayError(400, "limit must be an integer between 1 and 1000.")
    after = request.args.get("page") or request.args.get("after_id")
    active_only = request.args.get("include_revoked", "false").lower() not in ("true", "1")
    rows, has_more = store.list_sessions(
        email=request.args.get("email") or None, active_only=active_only, limit=limit, after=after
    )
    data = [render(row) for row in rows]
    return json_response(
        {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "next_page": data[-1]["id"] if data and has_more else None,
        }
    )


def revoke_sessions(request: Request) -> Response:
    cfg = config.current()
    admin = admin_auth.authenticate(request, cfg, "write")
    session_id = request.path.rstrip("/").rsplit("/", 1)[-1] if request.method == "DELETE" else None
    if session_id is not None:
        api.check_text("session_id", session_id)
    email = None
    if session_id is None:
        body = api.body(request)  # 400 for NUL or a lone surrogate, as on every admin write
        email, session_id = body.get("email"), body.get("session_id")
        if not (isinstance(email, str) and email) and not (isinstance(session_id, str) and session_id):
            raise GatewayError(400, 'Send {"email": ...} or {"session_id": ...} to revoke sessions.')
        email = email if isinstance(email, str) and email else None
        session_id = session_id if isinstance(session_id, str) and session_id else None
    count = revocation.revoke(
        email=email,
        session_id=session_id,
        actor=admin.actor,
        reason="admin",
        client_ip=clientip.client_ip(request, cfg),
        user_agent=request.headers.get("User-Agent"),
    )
    return json_response({"type": "sessions_revoked", "revoked": count})
