"""Audit events: one structured log line and one `audit_log` row each.

Sign-in events (device authorization, approval, denial, token issue, refresh,
refusal, revocation) and every admin write go through `record()`. Never pass
tokens or secrets: only identities, ids, addresses and before/after values.
"""

from __future__ import annotations

import json
from typing import Any

from common.core import logs
from common.db import pool as store


def record(
    action: str,
    *,
    actor: str,
    target: str | None = None,
    client_ip: str | None = None,
    user_agent: str | None = None,
    before: Any = None,
    after: Any = None,
    detail: dict[str, Any] | None = None,
    db: store.Database | None = None,
) -> None:
    """Write the event to the log, then to the audit table (a failure there is logged, not raised)."""
    logs.info(
        "audit",
        action=action,
        actor=actor,
        target=target,
        client_ip=client_ip,
        user_agent=user_agent,
        detail=detail,
    )
    try:
        (db or store.get()).execute(
            "INSERT INTO audit_log (actor, action, target, client_ip, user_agent, before, after, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb)",
            (
                actor,
                action,
                target,
                client_ip,
                (user_agent or "")[:512] or None,
                _json(before),
                _json(after),
                _json(detail),
            ),
        )
    except Exception as exc:
        logs.error("audit row not written", action=action, error=f"{type(exc).__name__}: {exc}")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)
