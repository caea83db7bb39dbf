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

import dataclasses
import json
import re
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

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> SettleRow:
        """The row `as_item` gave (a spilled `spend.unsettled` line); KeyError/ValueError/TypeError if it is not one."""
        keys, shards = item["keys"], item["shards"]
        if not isinstance(keys, list) or not isinstance(shards, list) or len(keys) != len(shards):
            raise ValueError("keys and shards must be lists of one length")
        return cls(
            reservation_key=str(item["reservation"]),
            request_id=_text_or_none(item.get("request_id")),
            at=datetime.fromisoformat(item["at"]),
            day=date.fromisoformat(item["day"]),
            user_email=str(item["user"]),
            user_sub=_text_or_none(item.get("sub")),
            groups=tuple(str(g) for g in item["groups"]),
            model=str(item["model"]),
            upstream=str(item["upstream"]),
            upstream_model=_text_or_none(item.get("upstream_model")),
            billing_group=_text_or_none(item.get("billing_group")),
            endpoint=str(item["endpoint"]),
            status=int(item["status"]),
            input_tokens=int(item["input"]),
            output_tokens=int(item["output"]),
            cache_read_tokens=int(item["cache_read"]),
            cache_write_5m_tokens=int(item["cache_5m"]),
            cache_write_1h_tokens=int(item["cache_1h"]),
            cost_micros=int(item["cost"]),
            counters=tuple((str(k), int(s)) for k, s in zip(keys, shards, strict=True)),
            sweep=False,
        )


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


# C0/C1 control characters and lone surrogates: what PostgreSQL text (UTF-8) or jsonb refuses,
# or what no id should hold.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def sanitized(row: SettleRow) -> SettleRow:
    """`row` with every unsafe character of its text fields replaced by U+FFFD (the same row if none)."""

    def clean(value: str) -> str:
        return _UNSAFE.sub("\ufffd", value)

    def maybe(value: str | None) -> str | None:
        return None if value is None else clean(value)

    return dataclasses.replace(
        row,
        request_id=maybe(row.request_id),
        user_email=clean(row.user_email),
        user_sub=maybe(row.user_sub),
        groups=tuple(clean(g) for g in row.groups),
        model=clean(row.model),
        upstream=clean(row.upstream),
        upstream_model=maybe(row.upstream_model),
        billing_group=maybe(row.billing_group),
        endpoint=clean(row.endpoint),
        counters=tuple((clean(k), s) for k, s in row.counters),
    )


def refused(exc: BaseException) -> bool:
    """Did the database (or the driver) refuse a statement for its data, not for being unreachable?

    SQLSTATE class 22 (data exception: an invalid byte sequence, a value out of
    range) or 23 (integrity), or a value the driver cannot encode. Retrying such
    a row is pointless; any other error (connection lost, server shutting
    down, a lock timeout) may pass on a retry."""
    if isinstance(exc, (UnicodeError, OverflowError)):
        return True
    detail = exc.args[0] if exc.args else None
    return isinstance(detail, dict) and str(detail.get("C", ""))[:2] in ("22", "23")


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


def recorded(db: Database, reservation_keys: Sequence[str]) -> set[str]:
    """Which of these settle keys already have their usage row."""
    if not reservation_keys:
        return set()
    rows = db.execute(
        "SELECT request_key::text FROM spend_usage WHERE request_key = ANY(%s::uuid[])", (list(reservation_keys),)
    )
    return {str(r[0]) for r in rows}


def delete_usage(db: Database) -> None:
    """Forget every usage row, counter and hold (benchmarks and dev tools; the gateway never calls it)."""
    db.execute("TRUNCATE spend_usage, spend_counters, spend_holds")


# --- reports over the usage rows ---------------------------------------------------------

_COST_COLUMNS = {"user": "u.user_email", "group": "g.grp", "model": "u.model", "day": "u.day"}
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
) -> list[CostRow]:
    """Cost and tokens of the usage rows of days [start, end) grouped by `group_by` (names in
    COST_DIMENSIONS), at most `limit` lines. Grouping by group counts a request once in each of its
    caller's groups; a request without groups falls in a None group."""
    where = ["u.day >= %s", "u.day < %s"]
    args: list[Any] = [start, end]
    for column, value in (("u.user_email", user), ("u.model", model)):
        if value:
            where.append(f"{column} = %s")
            args.append(value)
    if group:
        where.append("%s = ANY(u.groups)")
        args.append(group)
    needs_groups = "group" in group_by
    source = (
        "spend_usage u LEFT JOIN LATERAL unnest(CASE WHEN cardinality(u.groups) = 0 THEN ARRAY[NULL::text]"
        " ELSE u.groups END) AS g(grp) ON TRUE"
        if needs_groups
        else "spend_usage u"
    )
    if needs_groups and group:
        where.append("g.grp = %s")
        args.append(group)
    columns = [_COST_COLUMNS[d] for d in group_by]
    sql = (
        f"SELECT {', '.join(columns)}, sum(u.cost_micros), count(*), sum(u.input_tokens), sum(u.output_tokens),"  # noqa: S608
        " sum(u.cache_read_tokens), sum(u.cache_write_5m_tokens + u.cache_write_1h_tokens)"
        f" FROM {source} WHERE {' AND '.join(where)}"
        f" GROUP BY {', '.join(columns)} ORDER BY {', '.join(columns)} LIMIT %s"
    )
    n = len(columns)
    return [
        CostRow(dict(zip(group_by, r[:n], strict=True)), *(int(v) for v in r[n : n + 6]))
        for r in db.execute(sql, (*args, limit))
    ]


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
