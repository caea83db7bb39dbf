"""Audit events: one structured log line and one `audit_log` row each, and all SQL of that table.

Sign-in events (device authorization, approval, denial, token issue, refresh,
refusal, revocation) and every admin write go through `record()`. Never pass
tokens or secrets: only identities, ids, addresses and before/after values.
`events()` reads them back a page at a time (newest first) for the admin API
and the console, `count()` how many match the same filters, `actions()` the
distinct actions recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.core import logs
from common.db import pages, pool


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
    db: pool.Database | None = None,
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
        (db or pool.get()).execute(
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


@dataclass(frozen=True, slots=True)
class Event:
    """One `audit_log` row."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    client_ip: str | None
    user_agent: str | None
    before: Any
    after: Any
    detail: Any


_COLUMNS = "id, at, actor, action, target, client_ip, user_agent, before, after, detail"


def _filters(
    action: str | None, actor: str | None, target: str | None, action_prefix: str | None
) -> tuple[list[str], list[Any]]:
    """The conditions (constant SQL) and their arguments of the event filters: exact, or an action prefix."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("action", action), ("actor", actor), ("target", target)):
        if value:
            where.append(f"{column} = %s")
            args.append(value)
    if action_prefix:
        where.append("starts_with(action, %s)")
        args.append(action_prefix)
    return where, args


def events(
    *,
    limit: int,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    action_prefix: str | None = None,
    older_than: int | None = None,
    newer_than: int | None = None,
    db: pool.Database | None = None,
) -> tuple[list[Event], bool]:
    """A page of events newest first, and whether more follow in that direction.

    `older_than` (an event id) pages on towards older events; `newer_than`
    pages back towards newer ones, still listed newest first.
    """
    where, args = _filters(action, actor, target, action_prefix)
    if older_than is not None:
        where.append("id < %s")
        args.append(older_than)
    if newer_than is not None:
        where.append("id > %s")
        args.append(newer_than)
    rows, has_more = pages.keyset_page(
        db or pool.get(),
        f"SELECT {_COLUMNS} FROM audit_log",  # noqa: S608 (constant columns)
        where,
        args,
        "id",
        True,
        limit,
        backwards=newer_than is not None,
    )
    return [Event(*r) for r in rows], has_more


def count(
    *,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    action_prefix: str | None = None,
    db: pool.Database | None = None,
) -> int:
    """How many events match the filters of `events()` in all (whatever page is shown)."""
    where, args = _filters(action, actor, target, action_prefix)
    condition = " AND ".join(where) or "TRUE"
    return int((db or pool.get()).execute(f"SELECT count(*) FROM audit_log WHERE {condition}", tuple(args))[0][0])  # noqa: S608


def actions(db: pool.Database | None = None) -> list[str]:
    """The distinct actions recorded (at most 200, in order): the console's filter suggestions."""
    return [str(r[0]) for r in (db or pool.get()).execute("SELECT DISTINCT action FROM audit_log ORDER BY 1 LIMIT 200")]


def sweep(db: pool.Database, before: datetime, batch: int) -> int:
    """Delete up to `batch` events older than `before` (retention; index audit_log_at); how many went."""
    rows = db.execute(
        "WITH gone AS (DELETE FROM audit_log WHERE id = ANY(ARRAY("
        " SELECT id FROM audit_log WHERE at < %s LIMIT %s)) RETURNING 1) SELECT count(*) FROM gone",
        (before, batch),
    )
    return int(rows[0][0]) if rows else 0


def seed(db: pool.Database, day: datetime, count: int) -> int:
    """Synthetic sign-in events spread over one day (`python -m gateway seed`); the rows written."""
    rows = db.execute(
        "WITH ins AS (INSERT INTO audit_log (at, actor, action, target, client_ip, detail)"
        " SELECT %s::timestamptz + make_interval(secs => i * 86399 / %s::int), 'dev' || (i %% 1000) || '@example.com',"
        " 'token.refresh', 'ses_seed' || (i %% 1000), '203.0.113.7', '{\"seed\": true}'::jsonb"
        " FROM generate_series(1, %s::int) i RETURNING 1) SELECT count(*) FROM ins",
        (day, count, count),
    )
    return int(rows[0][0]) if rows else 0
