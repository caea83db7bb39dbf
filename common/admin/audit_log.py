"""`GET /v1/organizations/audit_log`: the admin audit log (who changed what, before/after), newest first."""

from __future__ import annotations

from typing import Any

from flask import Request, Response

from common.admin import api
from common.http import json_response

_COLUMNS = "id, at, actor, action, target, client_ip, user_agent, before, after, detail"


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": f"audit_{r[0]}",
        "type": "audit_event",
        "created_at": api.iso(r[1]),
        "actor": r[2],
        "action": r[3],
        "target": r[4],
        "client_ip": r[5],
        "user_agent": r[6],
        "before": r[7],
        "after": r[8],
        "detail": r[9],
    }


def _cursor(name: str, value: str) -> int:
    digits = value.removeprefix("audit_")
    if not digits.isdigit() or len(digits) > 18:
        raise api.invalid(name, f"expected an audit event id such as audit_42, got {value[:40]!r}")
    return int(digits)


def audit_log(request: Request) -> Response:
    api.caller(request, "read")
    page = api.page_args(request, default_limit=50, max_limit=1000)
    where = ["TRUE"]
    args: list[Any] = []
    for name in ("action", "actor", "target"):
        value = request.args.get(name)
        if value:
            where.append(f"{name} = %s")
            args.append(value)
    prefix = request.args.get("action_prefix")
    if prefix:
        where.append("starts_with(action, %s)")
        args.append(prefix)
    # Newest first: "after" a cursor means older rows, "before" means newer ones.
    if page.after_id:
        where.append("id < %s")
        args.append(_cursor("after_id", page.after_id))
    if page.before_id:
        where.append("id > %s")
        args.append(_cursor("before_id", page.before_id))
    rows, has_more = api.fetch_page(f"SELECT {_COLUMNS} FROM audit_log", where, args, "id", True, page)  # noqa: S608
    return json_response(api.list_envelope([_row(r) for r in rows], has_more, page.before_id is not None))
