"""The fleet tables' SQL (migration 012): which Claude Code versions call, each sign-in session's latest request.

`fleet_client_days` (day x client), `fleet_client_sessions` (client x session x
user, with its latest day) and `fleet_sessions` (the latest request of each user
x session) are maintained from `spend_usage` by a trigger, so the console's
fleet page reads O(sessions) rows, not every request of its window. A window is
the days from `first` to today: a session or user is in it when its latest
request (with that client) is. Their figures are those of the raw ledger
(tests/console compare them). Reads only, plus the retention deletes that keep
them equal to what is left of the ledger after `spend.store.sweep_usage`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from common.db import pages
from common.db.pool import Database


def client_versions(db: Database, first: date) -> list[tuple[Any, ...]]:
    """(client, users, sessions, requests, last seen, grouping) since `first`, most requests first; client NULL is
    a request recorded without one (before migration 011); grouping 1 is the total row (distinct over clients)."""
    rows = db.execute(
        "WITH s AS (SELECT client, count(DISTINCT user_email) AS users, count(DISTINCT session_id) AS sessions,"
        "  GROUPING(client) AS g FROM fleet_client_sessions WHERE last_day >= %s GROUP BY GROUPING SETS ((client), ())),"
        " r AS (SELECT client, sum(requests) AS requests, max(last_at) AS last, GROUPING(client) AS g"
        "  FROM fleet_client_days WHERE day >= %s GROUP BY GROUPING SETS ((client), ()))"
        " SELECT r.client, coalesce(s.users, 0), coalesce(s.sessions, 0), r.requests, r.last, r.g"
        " FROM r LEFT JOIN s ON s.g = r.g AND s.client IS NOT DISTINCT FROM r.client"
        " ORDER BY r.g, r.requests DESC, r.client",
        (first, first),
    )
    return [(r[0], int(r[1]), int(r[2]), int(r[3]), r[4], int(r[5])) for r in rows]


# Sessions of the window: their latest request is on or after its first day.
_IN_WINDOW = "session_id IS NOT NULL AND last_day >= %s"


def session_checks(db: Database, first: date) -> dict[str, int]:
    """Sessions seen since `first` by the verdict of their latest request ('none': no checksum asked or sent)."""
    rows = db.execute(
        f"SELECT coalesce(settings_check, 'none'), count(*) FROM fleet_sessions WHERE {_IN_WINDOW} GROUP BY 1",  # noqa: S608
        (first,),
    )
    return {str(r[0]): int(r[1]) for r in rows}


def latest_sessions(
    db: Database, first: date, search: str, check: str | None, limit: int, offset: int
) -> tuple[list[tuple[Any, ...]], int]:
    """(one page of (session, user, last request at, client, verdict) newest first, how many match).

    One row per sign-in session seen since `first`, as of its latest request;
    `check` keeps one verdict ('none' for NULL)."""
    where = _IN_WINDOW + " AND user_email LIKE %s"
    args: list[Any] = [first, pages.like_contains(search.strip().lower())]
    if check:
        where += " AND coalesce(settings_check, 'none') = %s"
        args.append(check)
    rows = db.execute(
        "SELECT session_id, user_email, last_at, client, settings_check, count(*) OVER ()"  # noqa: S608
        f" FROM fleet_sessions WHERE {where} ORDER BY last_at DESC, session_id LIMIT %s OFFSET %s",
        (*args, limit, offset),
    )
    if rows or offset == 0:
        return [tuple(r[:5]) for r in rows], int(rows[0][5]) if rows else 0
    count = db.execute(f"SELECT count(*) FROM fleet_sessions WHERE {where}", tuple(args))  # noqa: S608
    return [], int(count[0][0])


def users_last_seen(
    db: Database, first: date, search: str, limit: int, offset: int
) -> tuple[list[tuple[Any, ...]], int]:
    """(one page of (user, last request at, its client, its verdict) of users who made requests since `first`, most
    recently seen first; how many there are). A user's latest request is the latest of their sessions', and it
    is since `first` whenever any of theirs is, so only the window's rows of fleet_sessions are read."""
    rows = db.execute(
        "WITH u AS (SELECT DISTINCT ON (user_email) user_email, last_at, client, settings_check FROM fleet_sessions"
        "  WHERE last_day >= %s AND user_email LIKE %s ORDER BY user_email, last_at DESC, last_usage_id DESC)"
        " SELECT user_email, last_at, client, settings_check, count(*) OVER () FROM u"
        " ORDER BY last_at DESC, user_email LIMIT %s OFFSET %s",
        (first, pages.like_contains(search.strip().lower()), limit, offset),
    )
    if rows or offset == 0:
        return [tuple(r[:4]) for r in rows], int(rows[0][4]) if rows else 0
    count = db.execute(
        "SELECT count(DISTINCT user_email) FROM fleet_sessions WHERE last_day >= %s AND user_email LIKE %s",
        (first, pages.like_contains(search.strip().lower())),
    )
    return [], int(count[0][0])


# --- retention: run after spend.store.sweep_usage with the same cut ----------------------------


def _sweep(db: Database, table: str, column: str, before: date, batch: int) -> int:
    rows = db.execute(
        f"WITH gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 (table, column: constants below)
        f" SELECT ctid FROM {table} WHERE {column} < %s LIMIT %s)) RETURNING 1) SELECT count(*) FROM gone",
        (before, batch),
    )
    return int(rows[0][0]) if rows else 0


def sweep_client_days(db: Database, before: date, batch: int) -> int:
    """Delete up to `batch` per-day client rows of days before `before` (their usage rows are gone)."""
    return _sweep(db, "fleet_client_days", "day", before, batch)


def sweep_client_sessions(db: Database, before: date, batch: int) -> int:
    """Delete up to `batch` client x session rows last used before `before` (no usage row of theirs is left)."""
    return _sweep(db, "fleet_client_sessions", "last_day", before, batch)


def sweep_sessions(db: Database, before: date, batch: int) -> int:
    """Delete up to `batch` sessions whose latest request was before `before` (no usage row of theirs is left)."""
    return _sweep(db, "fleet_sessions", "last_day", before, batch)
