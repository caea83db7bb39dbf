"""All SQL of the spend tables (migrations 003 and 004), and the typed rows it reads and writes.

The tables: `spend_limits` (caps set through the admin API), `spend_holds`
(in-flight reservations), `spend_counters` (settled spend per key, day and
shard) and `spend_usage` (one row per metered request); and the functions
`spend_reserve`, `spend_settle` and `spend_settle_batch`. No other module
names them. Every function here sends one statement on the `db` it is given
(one round trip) and knows nothing of caps, prices or the config.

Rows: `Limit` (a cap as the ledger needs it), `LimitRecord` (with what the
admin API shows), `SettleRow` (one request's settle: the arguments of
`spend_settle`, field for field), `CostRow` (a line of the cost report),
`UsageTotals`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from common.core.periods import Period
from common.core.usage import Usage
from common.db import pages
from common.db.pool import Database

# --- limits --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limit:
    """One row of `spend_limits`, as the ledger uses it."""

    id: str
    scope_type: str  # user | rbac_group | organization
    scope_id: str  # lower-case email / group name / '' for the organisation
    period: Period
    amount_micros: int
    pooled: bool


@dataclass(frozen=True, slots=True)
class LimitRecord(Limit):
    """One row of `spend_limits` with the columns the admin API shows."""

    currency: str
    created_at: datetime
    updated_at: datetime
    seq: int  # stable order for cursor pagination


_LIMIT = "id, scope_type, scope_id, period, amount_micros, pooled"
_RECORD = _LIMIT + ", currency, created_at, updated_at, seq"


def _limit_fields(row: Sequence[Any]) -> tuple[str, str, str, Period, int, bool]:
    return str(row[0]), str(row[1]), str(row[2]), row[3], int(row[4]), bool(row[5])


def _record(row: Sequence[Any]) -> LimitRecord:
    return LimitRecord(*_limit_fields(row), str(row[6]), row[7], row[8], int(row[9]))


def all_limits(db: Database) -> list[Limit]:
    """Every cap (the ledger's cache reads the whole table: it is small)."""
    rows = db.execute(f"SELECT {_LIMIT} FROM spend_limits")  # noqa: S608 (constant columns)
    return [Limit(*_limit_fields(r)) for r in rows]


def limit_by_id(db: Database, limit_id: str) -> LimitRecord | None:
    rows = db.execute(f"SELECT {_RECORD} FROM spend_limits WHERE id = %s", (limit_id,))  # noqa: S608
    return _record(rows[0]) if rows else None


def limit_by_scope(db: Database, scope_type: str, scope_id: str, period: str) -> LimitRecord | None:
    rows = db.execute(
        f"SELECT {_RECORD} FROM spend_limits WHERE scope_type = %s AND scope_id = %s AND period = %s",  # noqa: S608
        (scope_type, scope_id, period),
    )
    return _record(rows[0]) if rows else None


def limit_seq(db: Database, limit_id: str) -> int | None:
    """The pagination position of a limit (None: no such id)."""
    rows = db.execute("SELECT seq FROM spend_limits WHERE id = %s", (limit_id,))
    return int(rows[0][0]) if rows else None


def list_limits(
    db: Database, *, scope_type: str | None, after_seq: int | None, before_seq: int | None, limit: int
) -> tuple[list[LimitRecord], bool]:
    """One page of limits in `seq` order after `after_seq` (or the page before `before_seq`), and whether more follow."""
    where: list[str] = []
    args: list[Any] = []
    if scope_type:
        where.append("scope_type = %s")
        args.append(scope_type)
    if before_seq is not None:
        where.append("seq < %s")
        args.append(before_seq)
    elif after_seq is not None:
        where.append("seq > %s")
        args.append(after_seq)
    select = f"SELECT {_RECORD} FROM spend_limits"  # noqa: S608 (constant columns)
    rows, has_more = pages.keyset_page(db, select, where, args, "seq", False, limit, backwards=before_seq is not None)
    return [_record(r) for r in rows], has_more


def limits_page(db: Database, *, scope_type: str | None, limit: int, offset: int) -> tuple[list[LimitRecord], int]:
    """One page of limits in creation order by offset, and how many there are in all (the console's pager)."""
    where, args = ("scope_type = %s", [scope_type]) if scope_type else ("TRUE", [])
    rows = db.execute(
        f"SELECT {_RECORD} FROM spend_limits WHERE {where} ORDER BY seq LIMIT %s OFFSET %s",  # noqa: S608
        (*args, limit, offset),
    )
    total = db.execute(f"SELECT count(*) FROM spend_limits WHERE {where}", tuple(args))  # noqa: S608
    return [_record(r) for r in rows], int(total[0][0])


def upsert_limit(
    db: Database, new_id: str, scope_type: str, scope_id: str, period: str, amount_micros: int, pooled: bool
) -> tuple[LimitRecord, bool]:
    """Create the limit of (scope, period), or set its amount and pooling; (row, created)."""
    rows = db.execute(
        "INSERT INTO spend_limits (id, scope_type, scope_id, period, amount_micros, pooled)"  # noqa: S608
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (scope_type, scope_id, period) DO UPDATE SET amount_micros = EXCLUDED.amount_micros,"
        " pooled = EXCLUDED.pooled, updated_at = now()"
        f" RETURNING {_RECORD}, (xmax = 0)",
        (new_id, scope_type, scope_id, period, amount_micros, pooled),
    )
    return _record(rows[0]), bool(rows[0][-1])


def update_limit(db: Database, limit_id: str, amount_micros: int, pooled: bool) -> LimitRecord | None:
    rows = db.execute(
        "UPDATE spend_limits SET amount_micros = %s, pooled = %s, updated_at = now() WHERE id = %s"  # noqa: S608
        f" RETURNING {_RECORD}",
        (amount_micros, pooled, limit_id),
    )
    return _record(rows[0]) if rows else None


def delete_limit(db: Database, limit_id: str) -> LimitRecord | None:
    rows = db.execute(f"DELETE FROM spend_limits WHERE id = %s RETURNING {_RECORD}", (limit_id,))  # noqa: S608
    return _record(rows[0]) if rows else None


# --- standing: counters and holds ------------------------------------------------------


def recent_usage(db: Database, limit: int = 4096) -> list[tuple[str, Usage]]:
    """(model, usage) of the last `limit` answered /v1/messages requests of the last two days, oldest first.

    Read once per instance to seed what admission expects (`spend.observed`); the
    primary key's index walks back from the newest row, so its cost does not grow
    with the table.
    """
    rows = db.execute(
        "SELECT model, input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens"
        " FROM spend_usage WHERE endpoint = 'messages' AND status < 400 AND day >= current_date - 1"
        " ORDER BY id DESC LIMIT %s",
        (limit,),
    )
    found = [
        (
            str(r[0]),
            Usage(
                input_tokens=int(r[1]),
                output_tokens=int(r[2]),
                cache_read_input_tokens=int(r[3]),
                cache_creation_5m_input_tokens=int(r[4]),
                cache_creation_1h_input_tokens=int(r[5]),
            ),
        )
        for r in rows
    ]
    found.reverse()
    return found


def period_spend(db: Database, keys: Sequence[str], starts: Sequence[date], day: date) -> list[tuple[int, int]]:
    """(settled, held) micro-dollars for each (key, first day) pair up to `day`, in one statement."""
    if not keys:
        return []
    rows = db.execute(
        "SELECT k.i,"
        " coalesce((SELECT sum(c.spent_micros) FROM spend_counters c"
        "   WHERE c.scope_key = k.key AND c.day >= k.first AND c.day <= %s), 0),"
        " coalesce((SELECT sum(h.amount_micros) FROM spend_holds h"
        "   WHERE h.scope_key = k.key AND h.expires_at > clock_timestamp()), 0)"
        " FROM unnest(%s::text[], %s::date[]) WITH ORDINALITY AS k(key, first, i) ORDER BY k.i",
        (day, list(keys), list(starts)),
    )
    return [(int(r[1]), int(r[2])) for r in rows]


def reserve(
    db: Database,
    reservation_key: str,
    keys: Sequence[str],
    starts: Sequence[date],
    caps_micros: Sequence[int],
    day: date,
    estimate_micros: int,
    ttl_seconds: int,
    lock_keys: Sequence[str],
) -> tuple[list[tuple[int, int]], bool]:
    """`spend_reserve`: hold `estimate_micros` on every key unless one is at its cap.

    Returns (settled, held) per key as seen before the hold, and whether it was admitted.
    `lock_keys` must be sorted (advisory locks in one order: no deadlocks)."""
    rows = db.execute(
        "SELECT spent, held, admitted FROM spend_reserve(%s::uuid, %s::text[], %s::date[], %s::bigint[],"
        " %s::date, %s::bigint, %s::integer, %s::text[])",
        (
            reservation_key,
            list(keys),
            list(starts),
            list(caps_micros),
            day,
            estimate_micros,
            ttl_seconds,
            list(lock_keys),
        ),
    )
    admitted = bool(rows[0][2]) if rows else True
    return [(int(r[0]), int(r[1])) for r in rows], admitted


# --- settle: usage rows and counters ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettleRow:
    """One request's settle: its `spend_usage` row, the counters its cost goes to, its holds to drop."""

    reservation_key: str  # uuid: the usage row's idempotency key and the holds' id
    request_id: str | None
    at: datetime
    day: date
    user_email: str
    user_sub: str | None
    groups: tuple[str, ...]
    model: str
    upstream: str
    upstream_model: str | None
    billing_group: str | None
    endpoint: str
    status: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cost_micros: int
    counters: tuple[tuple[str, int], ...]  # (key, shard), sorted: counter rows locked in one order
    sweep: bool  # also delete every expired hold

    def as_args(self) -> tuple[Any, ...]:
        """The arguments of `spend_settle`, in its parameter order."""
        return (
            self.reservation_key,
            self.request_id,
            self.at,
            self.day,
            self.user_email,
            self.user_sub,
            list(self.groups),
            self.model,
            self.upstream,
            self.upstream_model,
            self.billing_group,
            self.endpoint,
            self.status,
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_5m_tokens,
            self.cache_write_1h_tokens,
            self.cost_micros,
            [k for k, _ in self.counters],
            [s for _, s in self.counters],
            self.sweep,
        )

    def as_item(self) -> dict[str, Any]:
        """One element of `spend_settle_batch`'s JSON array (its keys are the function's)."""
        return {
            "reservation": self.reservation_key,
            "request_id": self.request_id,
            "at": self.at.isoformat(),
            "day": self.day.isoformat(),
            "user": self.user_email,
            "sub": self.user_sub,
            "groups": list(self.groups),
            "model": self.model,
            "upstream": self.upstream,
            "upstream_model": self.upstream_model,
            "billing_group": self.billing_group,
            "endpoint": self.endpoint,
            "status": self.status,
            "input": self.input_tokens,
            "output": self.output_tokens,
            "cache_read": self.cache_read_tokens,
            "cache_5m": self.cache_write_5m_tokens,
            "cache_1h": self.cache_write_1h_tokens,
            "cost": self.cost_micros,
            "keys": [k for k, _ in self.counters],
            "shards": [s for _, s in self.counters],
            "sweep": self.sweep,
        }


_SETTLE = (
    "SELECT spend_settle(%s::uuid, %s, %s, %s::date, %s, %s, %s::text[], %s, %s, %s, %s, %s, %s,"
    " %s, %s, %s, %s, %s, %s, %s::text[], %s::smallint[], %s)"
)


def settle(db: Database, row: SettleRow) -> None:
    """`spend_settle`: drop the holds, write the usage row and (the first time only) add the cost."""
    db.execute(_SETTLE, row.as_args())


def settle_batch(db: Database, rows: Sequence[SettleRow]) -> None:
    """`spend_settle_batch`: the effects of `settle` for every row, in one statement."""
    db.execute("SELECT spend_settle_batch(%s::jsonb)", (json.dumps([r.as_item() for r in rows]),))


def delete_usage(db: Database) -> None:
    """Forget every usage row, rollup, counter and hold (benchmarks and dev tools; the gateway never calls it)."""
    db.execute("TRUNCATE spend_usage, spend_daily, spend_counters, spend_holds")


# --- reports over the usage rows ---------------------------------------------------------

_COST_COLUMNS = {"user": "d.user_email", "group": "g.grp", "model": "d.model", "day": "d.day"}
COST_DIMENSIONS: tuple[str, ...] = tuple(_COST_COLUMNS)


@dataclass(frozen=True, slots=True)
class CostRow:
    keys: dict[str, Any]  # dimension -> value (a date for `day`; None for "no group")
    cost_micros: int
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


@dataclass(frozen=True, slots=True)
class CostReport:
    rows: list[CostRow]  # at most the `limit` asked for
    total_micros: int  # every request matching the filter, once each, however many lines were returned


def cost_report(
    db: Database,
    start: date,
    end: date,
    group_by: Sequence[str],
    *,
    user: str | None = None,
    model: str | None = None,
    group: str | None = None,
    limit: int,
) -> CostReport:
    """Cost and tokens of days [start, end) grouped by `group_by` (names in COST_DIMENSIONS), at most
    `limit` lines, and the total over the whole filter, in one statement on the daily rollups
    (`spend_daily`, ~3 rows per user and day). Grouping by group counts a request once in each of its
    caller's groups; a request without groups falls in a None group; the total counts it once."""
    where = ["d.day >= %s", "d.day < %s"]
    args: list[Any] = [start, end]
    for column, value in (("d.user_email", user), ("d.model", model)):
        if value:
            where.append(f"{column} = %s")
            args.append(value)
    if group:
        where.append("%s = ANY(d.groups)")
        args.append(group)
    needs_groups = "group" in group_by
    source = (
        "f d LEFT JOIN LATERAL unnest(CASE WHEN cardinality(d.groups) = 0 THEN ARRAY[NULL::text]"
        " ELSE d.groups END) AS g(grp) ON TRUE"
        if needs_groups
        else "f d"
    )
    line_where = "TRUE"
    line_args: list[Any] = []
    if needs_groups and group:
        line_where = "g.grp = %s"
        line_args.append(group)
    columns = [_COST_COLUMNS[d] for d in group_by]
    # The total is a second aggregate over the same filtered rollups (before any unnest), so a
    # truncated page or a request in two groups cannot skew it.
    sql = (
        f"WITH f AS (SELECT * FROM spend_daily d WHERE {' AND '.join(where)}),"  # noqa: S608
        " total AS (SELECT coalesce(sum(cost_micros), 0) AS micros FROM f),"
        f" lines AS (SELECT {', '.join(columns)}, sum(d.cost_micros), sum(d.requests), sum(d.input_tokens),"
        " sum(d.output_tokens), sum(d.cache_read_tokens), sum(d.cache_write_5m_tokens + d.cache_write_1h_tokens)"
        f" FROM {source} WHERE {line_where}"
        f" GROUP BY {', '.join(columns)} ORDER BY {', '.join(columns)} LIMIT %s)"
        " SELECT total.micros, lines.* FROM total LEFT JOIN lines ON TRUE"
        f" ORDER BY {', '.join(str(i + 2) for i in range(len(columns)))}"
    )
    n = len(columns)
    result = db.execute(sql, (*args, *line_args, limit))
    rows = [
        CostRow(dict(zip(group_by, r[1 : n + 1], strict=True)), *(int(v) for v in r[n + 1 : n + 7]))
        for r in result
        if r[n + 1] is not None
    ]
    return CostReport(rows, int(result[0][0]) if result else 0)


@dataclass(frozen=True, slots=True)
class UsageTotals:
    requests: int
    input_tokens: int
    output_tokens: int
    cost_micros: int


def usage_totals(db: Database, user_email: str) -> UsageTotals:
    """Everything recorded for one user: requests, tokens and cost."""
    rows = db.execute(
        "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cost_micros), 0)"
        " FROM spend_usage WHERE user_email = %s",
        (user_email,),
    )
    return UsageTotals(*(int(v) for v in rows[0]))


# --- retention: bounded deletes by age (common.admin.retention schedules them) ----------------
# Each deletes at most `batch` rows in one statement, found through an index on
# the age column, and returns how many it deleted (fewer than `batch`: done).


def _count(rows: list[tuple[Any, ...]]) -> int:
    return int(rows[0][0]) if rows else 0


def sweep_usage(db: Database, before: date, batch: int) -> int:
    """Delete up to `batch` usage rows of days before `before` (their rollups stay)."""
    return _count(
        db.execute(
            "WITH gone AS (DELETE FROM spend_usage WHERE id = ANY(ARRAY("
            " SELECT id FROM spend_usage WHERE day < %s LIMIT %s)) RETURNING 1) SELECT count(*) FROM gone",
            (before, batch),
        )
    )


def _sweep_days(db: Database, table: str, before: date, batch: int) -> int:
    return _count(
        db.execute(
            f"WITH gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 (table: a constant below)
            f" SELECT ctid FROM {table} WHERE day < %s LIMIT %s)) RETURNING 1) SELECT count(*) FROM gone",
            (before, batch),
        )
    )


def sweep_rollups(db: Database, before: date, batch: int) -> int:
    """Delete up to `batch` daily rollups of days before `before`."""
    return _sweep_days(db, "spend_daily", before, batch)


def sweep_counters(db: Database, before: date, batch: int) -> int:
    """Delete up to `batch` per-day counters of days before `before` (no cap period reaches that far back)."""
    return _sweep_days(db, "spend_counters", before, batch)


def sweep_holds(db: Database, batch: int) -> int:
    """Delete up to `batch` expired holds (a settle also drops them; this catches quiet periods)."""
    return _count(
        db.execute(
            "WITH gone AS (DELETE FROM spend_holds WHERE ctid = ANY(ARRAY("
            " SELECT ctid FROM spend_holds WHERE expires_at < clock_timestamp() LIMIT %s FOR UPDATE SKIP LOCKED))"
            " RETURNING 1) SELECT count(*) FROM gone",
            (batch,),
        )
    )


def has_usage(db: Database) -> bool:
    return bool(db.execute("SELECT EXISTS (SELECT 1 FROM spend_usage)")[0][0])


def seed_usage(
    db: Database, day: date, users: int, per_day: int, *, models: Sequence[str], groups_per_user: int = 2
) -> int:
    """Synthetic usage of one day (`python -m gateway seed`): `per_day` requests for each of `users` developers,
    spread over the day, with their counters, in one statement. Returns the rows written."""
    rows = db.execute(
        "WITH ins AS (INSERT INTO spend_usage (request_key, request_id, at, day, user_email, groups, model, upstream,"
        " endpoint, status, input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens, cost_micros)"
        " SELECT gen_random_uuid(), 'seed', %s::date + make_interval(secs => (r * 86399 / %s::int + u) %% 86400),"
        " %s::date, 'dev' || u || '@example.com',"
        " ARRAY(SELECT 'team' || ((u + k * 7) %% 40) FROM generate_series(1, %s::int) k) || ARRAY['eng'],"
        " (%s::text[])[1 + (u + r) %% cardinality(%s::text[])], 'vertex', 'messages',"
        " CASE WHEN (u * 7 + r) %% 50 = 0 THEN 529 ELSE 200 END, 2000 + r %% 500, 300 + u %% 200, 20000, 500,"
        " 1000 + (u * 13 + r * 7) %% 50000"
        " FROM generate_series(1, %s::int) u, generate_series(1, %s::int) r RETURNING user_email, cost_micros),"
        " counters AS (INSERT INTO spend_counters AS c (scope_key, day, shard, spent_micros)"
        " SELECT 'user:' || user_email, %s::date, 0, sum(cost_micros) FROM ins GROUP BY 1"
        " UNION ALL SELECT 'org', %s::date, 0, sum(cost_micros) FROM ins"
        " ON CONFLICT (scope_key, day, shard) DO UPDATE SET spent_micros = c.spent_micros + EXCLUDED.spent_micros)"
        " SELECT count(*) FROM ins",
        (day, per_day, day, groups_per_user, list(models), list(models), users, per_day, day, day),
    )
    return _count(rows)
