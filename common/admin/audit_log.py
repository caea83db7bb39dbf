"""`GET /v1/organizations/audit_log`: the admin audit log (who changed what, before/after), newest first.

The HTTP side only: filters and cursors from the query string, the list
envelope; the query is `audit.records.events()`.
"""

from __future__ import annotations

from typing import Any

from flask import Request, Response

from common.admin import api
from common.audit import records
from common.http import json_response


def _event(event: records.Event) -> dict[str, Any]:
    return {
        "id": f"audit_{event.id}",
        "type": "audit_event",
        "created_at": api.iso(event.at),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "client_ip": event.client_ip,
        "user_agent": event.user_agent,
        "before": event.before,
        "after": event.after,
        "detail": event.detail,
    }


def _cursor(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    digits = value.removeprefix("audit_")
    if not digits.isdigit() or len(digits) > 18:
        raise api.invalid(name, f"expected an audit event id such as audit_42, got {value[:40]!r}")
    return int(digits)


def audit_log(request: Request) -> Response:
    api.caller(request, "read")
    page = api.page_args(request, default_limit=50, max_limit=1000)
    found, has_more = records.events(
        limit=page.limit,
        action=request.args.get("action") or None,
        actor=request.args.get("actor") or None,
        target=request.args.get("target") or None,
        action_prefix=request.args.get("action_prefix") or None,
        # Newest first: "after" a cursor means older rows, "before" means newer ones.
        older_than=_cursor("after_id", page.after_id),
        newer_than=_cursor("before_id", page.before_id),
    )
    return json_response(api.list_envelope([_event(e) for e in found], has_more, page.before_id is not None))
