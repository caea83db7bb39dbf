"""Every SQL statement the console runs against the spend and audit tables, in one place.

The figures come from the same rows the admin API's cost analytics reads
(`spend_usage`) and the same per-day counters the caps are checked against
(`spend_counters`, summed over shards and days); totals are computed by the
database (GROUPING SETS, window aggregates), never by adding up one page.
These statements belong in the spend package's store module once it has one:
they are kept here, together, so they can be moved in one piece.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from common.db import pool as store

USER_PREFIX = "user:"


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True, slots=True)
class DayModel:
    day: date
    model: str
    cost_micros: int
    requests: int
    errors: int


@dataclass(frozen=True, slots=True)
class Series:
    """Spend per (day, model) over a range, and the database's own totals over the whole range."""

    rows: list[DayModel]
    cost_micros: int
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int


def daily_by_model(db: store.Database, first: date, last: date, user: str | None = None) -> Series:
    """Spend per day and model from the usage ledger, days `first`..`last` inclusive (optionally one user's)."""
    where = "day >= %s AND day <= %s"
    args: list[Any] = [first, last]
    if user is not None:
        where += " AND user_email = %s"
        args.append(user)
    rows = db.execute(
        "SELECT day, model, sum(cost_micros), count(*), count(*) FILTER (WHERE status >= 400 OR status IS NULL),"  # noqa: S608
        " sum(input_tokens + cache_read_tokens + cache_write_5m_tokens + cache_write_1h_tokens), sum(output_tokens),"
        " GROUPING(day, model)"
        f" FROM spend_usage WHERE {where} GROUP BY GROUPING SETS ((day, model), ()) ORDER BY day, model",
        tuple(args),
    )
    out: list[DayModel] = []
    totals = (0, 0, 0, 0, 0)
    for r in rows:
        if int(r[7]) != 0:
            totals = (int(r[2] or 0), int(r[3]), int(r[4]), int(r[5] or 0), int(r[6] or 0))
            continue
        out.append(DayModel(r[0], str(r[1]), int(r[2]), int(r[3]), int(r[4])))
    return Series(out, *totals)


@dataclass(frozen=True, slots=True)
class UserSpend:
    email: str
    spent_micros: int


def users_by_spend(
    db: store.Database, first: date, last: date, search: str, limit: int, offset: int
) -> tuple[list[UserSpend], int, int]:
    """(one page of users by settled spend over the days, how many users match, their total spend).

    Read from the per-day user counters (one row per user and day), which the
    settle writes in the same statement as the usage row.
    """
    pattern = USER_PREFIX + "%" + _like(search.strip().lower()) + "%"
    rows = db.execute(
        "SELECT substr(scope_key, %s), sum(spent_micros) AS spent, count(*) OVER (), sum(sum(spent_micros)) OVER ()"
        " FROM spend_counters"
        " WHERE scope_key >= 'user:' AND scope_key < 'user;' AND scope_key LIKE %s AND day >= %s AND day <= %s"
        " GROUP BY scope_key ORDER BY spent DESC, scope_key LIMIT %s OFFSET %s",
        (len(USER_PREFIX) + 1, pattern, first, last, limit, offset),
    )
    if not rows:
        if offset == 0:
            return [], 0, 0
        count = db.execute(
            "SELECT count(DISTINCT scope_key), coalesce(sum(spent_micros), 0) FROM spend_counters"
            " WHERE scope_key >= 'user:' AND scope_key < 'user;' AND scope_key LIKE %s AND day >= %s AND day <= %s",
            (pattern, first, last),
        )
        return [], int(count[0][0]), int(count[0][1])
    return [UserSpend(str(r[0]), int(r[1])) for r in rows], int(rows[0][2]), int(rows[0][3])


def last_seen(db: store.Database, emails: list[str]) -> dict[str, datetime]:
    """The time of each user's latest metered request (index spend_usage_user_at)."""
    if not emails:
        return {}
    rows = db.execute(
        "SELECT e.email, (SELECT max(u.at) FROM spend_usage u WHERE u.user_email = e.email)"
        " FROM unnest(%s::text[]) AS e(email)",
        (emails,),
    )
    return {str(r[0]): r[1] for r in rows if r[1] is not None}


def latest_groups(db: store.Database, email: str) -> tuple[str, ...] | None:
    """The groups the user last signed in (or was metered) with."""
    rows = db.execute(
        "SELECT groups FROM ("
        " (SELECT groups, created_at AS at FROM auth_sessions WHERE lower(email) = %s ORDER BY created_at DESC LIMIT 1)"
        " UNION ALL (SELECT to_jsonb(groups), at FROM spend_usage WHERE user_email = %s ORDER BY at DESC LIMIT 1)"
        ") g ORDER BY at DESC LIMIT 1",
        (email, email),
    )
    if not rows:
        return None
    value = rows[0][0]
    if isinstance(value, str):
        import json

        value = json.loads(value)
    return tuple(str(g) for g in value or ())


@dataclass(frozen=True, slots=True)
class RequestRow:
    id: int
    at: datetime
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_micros: int
    status: int | None


def recent_requests(
    db: store.Database, email: str, before: tuple[datetime, int] | None, limit: int
) -> tuple[list[RequestRow], bool]:
    """One page of the user's metered requests, newest first (keyset on (at, id)); never any prompt text."""
    where = "user_email = %s"
    args: list[Any] = [email]
    if before is not None:
        where += " AND (at, id) < (%s, %s)"
        args += [before[0], before[1]]
    rows = db.execute(
        "SELECT id, at, model, input_tokens, output_tokens, cache_read_tokens,"  # noqa: S608
        " cache_write_5m_tokens + cache_write_1h_tokens, cost_micros, status"
        f" FROM spend_usage WHERE {where} ORDER BY at DESC, id DESC LIMIT %s",
        (*args, limit + 1),
    )
    page = [
        RequestRow(int(r[0]), r[1], str(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]), r[8])
        for r in rows[:limit]
    ]
    return page, len(rows) > limit


def request_cursor(db: store.Database, request_row_id: int) -> tuple[datetime, int] | None:
    rows = db.execute("SELECT at, id FROM spend_usage WHERE id = %s", (request_row_id,))
    return (rows[0][0], int(rows[0][1])) if rows else None


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    client_ip: str | None
    before: Any
    after: Any
    detail: Any


def audit_page(
    db: store.Database, filters: dict[str, str], older_than: int | None, limit: int
) -> tuple[list[AuditRow], bool, int]:
    """(a page of audit events newest first, more follow, how many match the filters in all)."""
    where = ["TRUE"]
    args: list[Any] = []
    for name in ("actor", "target"):
        if filters.get(name):
            where.append(f"{name} = %s")
            args.append(filters[name])
    if filters.get("action"):
        where.append("starts_with(action, %s)")
        args.append(filters["action"])
    condition = " AND ".join(where)
    total = int(db.execute(f"SELECT count(*) FROM audit_log WHERE {condition}", tuple(args))[0][0])  # noqa: S608
    if older_than is not None:
        condition += " AND id < %s"
        args.append(older_than)
    rows = db.execute(
        f"SELECT id, at, actor, action, target, client_ip, before, after, detail FROM audit_log WHERE {condition}"  # noqa: S608
        " ORDER BY id DESC LIMIT %s",
        (*args, limit + 1),
    )
    page = [AuditRow(int(r[0]), r[1], str(r[2]), str(r[3]), r[4], r[5], r[6], r[7], r[8]) for r in rows[:limit]]
    return page, len(rows) > limit, total


def audit_actions(db: store.Database) -> list[str]:
    return [str(r[0]) for r in db.execute("SELECT DISTINCT action FROM audit_log ORDER BY 1 LIMIT 200")]
