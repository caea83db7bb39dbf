"""All SQL of the spend tables (migrations 003 and 004), and the typed rows it reads and writes.

The tables: `spend_limits` (caps set through the admin API), `spend_holds`
(in-flight reservations), `spend_counters` (settled spend per key, day and
shard) and `spend_usage` (one row per metered request); and the functions
`spend_reserve`, `spend_settle` and `spend_settle_batch`. No other module
names them. Every function here sends one statement on the `db` it is given
(one round trip) unless it says otherwise, and knows nothing of caps, prices
or the config.

Rows: `Limit` (a cap as the ledger needs it), `LimitRecord` (with what the
admin API shows), `SettleRow` (one request's settle: the arguments of
`spend_settle`, field for field), `CostRow` (a line of the cost report),
`UsageTotals`; and what the console reads: `Series` of `DayModel` (spend per
day and model with the database's own totals), `UserSpend`, `RequestRow`.
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
    lease: LeaseAsk | None = None,
    release: Sequence[str] = (),
) -> tuple[list[tuple[int, int]], bool, int]:
    """`spend_reserve`: hold `estimate_micros` on every key unless one is at its cap.

    With `lease`, the hold is instead a lease (`lease.key`) of up to `lease.max_micros` while
    every cap is far from full (migration 013). The holds of the leases in `release` are
    dropped first. Returns (settled, held) per key as seen before the hold, whether it was
    admitted, and the lease granted (0: a hold of `estimate_micros` under `reservation_key`).
    `lock_keys` must be sorted (advisory locks in one order: no deadlocks)."""
    rows = db.execute(
        "SELECT spent, held, admitted, leased FROM spend_reserve(%s::uuid, %s::text[], %s::date[], %s::bigint[],"
        " %s::date, %s::bigint, %s::integer, %s::text[], %s::uuid, %s::bigint, %s::integer, %s::integer, %s::uuid[])",
        (
            reservation_key,
            list(keys),
            list(starts),
            list(caps_micros),
            day,
            estimate_micros,
            ttl_seconds,
            list(lock_keys),
            lease.key if lease else None,
            lease.max_micros if lease else 0,
            lease.headroom_percent if lease else 0,
            lease.below_percent if lease else 0,
            list(release) or None,
        ),
    )
    admitted = bool(rows[0][2]) if rows else True
    leased = int(rows[0][3]) if rows else 0
    return [(int(r[0]), int(r[1])) for r in rows], admitted, leased


@dataclass(frozen=True, slots=True)
class LeaseAsk:
    """What `reserve` asks of a lease: its hold id and the bounds on its size (migration 013)."""

    key: str  # uuid
    max_micros: int
    headroom_percent: int
    below_percent: int


def release_leases(db: Database, keys: Sequence[str]) -> int:
    """Drop the holds of these leases (an instance stopping); how many hold rows went."""
    if not keys:
        return 0
    return _count(
        db.execute(
            "WITH gone AS (DELETE FROM spend_holds WHERE reservation_id = ANY(%s::uuid[]) RETURNING 1)"
            " SELECT count(*) FROM gone",
            (list(keys),),
        )
    )


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
    # Fleet (migration 011): User-Agent product token, sign-in session, managed-settings check.
    client: str | None = None
    session_id: str | None = None
    settings_check: str | None = None
    # Leases (migration 013): the lease this request was admitted against (its hold shrinks by
    # the cost), and leases whose holds this statement drops.
    lease: str | None = None
    release: tuple[str, ...] = ()

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
            "client": self.client,
            "session_id": self.session_id,
            "settings_check": self.settings_check,
            "lease": self.lease,
            "release": list(self.release),
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
            lease=_text_or_none(item.get("lease")),
            release=tuple(str(r) for r in item.get("release") or ()),
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
    " %s, %s, %s, %s, %s, %s, %s::text[], %s::smallint[], %s, %s, %s, %s, %s::uuid, %s::uuid[])"
)


def settle(db: Database, row: SettleRow) -> None:
    """`spend_settle`: drop the holds, write the usage row and (the first time only) add the cost."""
    # The fleet columns (migration 011) and the lease ones (013) are trailing parameters with
    # defaults, after as_args()'s 22.
    db.execute(
        _SETTLE,
        (*row.as_args(), row.client, row.session_id, row.settings_check, row.lease, list(row.release) or None),
    )


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


# --- the console's reads -------------------------------------------------------------------
# Totals are computed by the database (GROUPING SETS, window aggregates), never by adding up one page.

_USER_PREFIX = "user:"


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


def daily_by_model(db: Database, first: date, last: date, user: str | None = None) -> Series:
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
    db: Database, first: date, last: date, search: str, limit: int, offset: int
) -> tuple[list[UserSpend], int, int]:
    """(one page of users by settled spend over the days, how many users match, their total spend).

    Read from the per-day user counters (one row per user and day), which the
    settle writes in the same statement as the usage row. One statement, and a
    second only for a page past the last (to count what matches).
    """
    pattern = _USER_PREFIX + "%" + _like(search.strip().lower()) + "%"
    rows = db.execute(
        "SELECT substr(scope_key, %s), sum(spent_micros) AS spent, count(*) OVER (), sum(sum(spent_micros)) OVER ()"
        " FROM spend_counters"
        " WHERE scope_key >= 'user:' AND scope_key < 'user;' AND scope_key LIKE %s AND day >= %s AND day <= %s"
        " GROUP BY scope_key ORDER BY spent DESC, scope_key LIMIT %s OFFSET %s",
        (len(_USER_PREFIX) + 1, pattern, first, last, limit, offset),
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


def last_seen(db: Database, emails: list[str]) -> dict[str, datetime]:
    """The time of each user's latest metered request (index spend_usage_user_at)."""
    if not emails:
        return {}
    rows = db.execute(
        "SELECT e.email, (SELECT max(u.at) FROM spend_usage u WHERE u.user_email = e.email)"
        " FROM unnest(%s::text[]) AS e(email)",
        (emails,),
    )
    return {str(r[0]): r[1] for r in rows if r[1] is not None}


def latest_usage_groups(db: Database, email: str) -> tuple[tuple[str, ...], datetime] | None:
    """The groups of the user's latest metered request, and its time (None: no request)."""
    rows = db.execute(
        "SELECT groups, at FROM spend_usage WHERE user_email = %s ORDER BY at DESC LIMIT 1",
        (email,),
    )
    return (tuple(str(g) for g in rows[0][0] or ()), rows[0][1]) if rows else None


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
    db: Database, email: str, before: tuple[datetime, int] | None, limit: int
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


def request_cursor(db: Database, request_row_id: int) -> tuple[datetime, int] | None:
    """The keyset position (at, id) of one usage row, for `recent_requests`' `before` (None: no such row)."""
    rows = db.execute("SELECT at, id FROM spend_usage WHERE id = %s", (request_row_id,))
    return (rows[0][0], int(rows[0][1])) if rows else None


# --- the console's groups and fleet pages (reads only) ------------------------------------


def groups_by_spend(
    db: Database, first: date, last: date, search: str, limit: int, offset: int
) -> tuple[list[tuple[str, int]], int, int]:
    """(one page of (group, settled spend) over the days, how many groups match, their total spend).

    From the per-day group counters (the settle adds every request's cost to each
    of its caller's groups); counts and totals are the database's, over all pages.
    """
    where = "scope_key >= 'group:' AND scope_key < 'group;' AND scope_key LIKE %s AND day >= %s AND day <= %s"
    args = ("group:" + pages.like_contains(search.strip().lower()), first, last)
    rows = db.execute(
        "SELECT substr(scope_key, 7), sum(spent_micros) AS spent, count(*) OVER (), sum(sum(spent_micros)) OVER ()"  # noqa: S608
        f" FROM spend_counters WHERE {where} GROUP BY scope_key ORDER BY spent DESC, scope_key LIMIT %s OFFSET %s",
        (*args, limit, offset),
    )
    if rows:
        return [(str(r[0]), int(r[1])) for r in rows], int(rows[0][2]), int(rows[0][3])
    count = db.execute(
        f"SELECT count(DISTINCT scope_key), coalesce(sum(spent_micros), 0) FROM spend_counters WHERE {where}",  # noqa: S608
        args,
    )
    return [], int(count[0][0]), int(count[0][1])


def group_daily_by_model(db: Database, group: str, first: date, last: date) -> list[tuple[Any, ...]]:
    """(day, model, cost, requests, errors, input tokens, output tokens, grouping) of the requests made in `group`,
    days first..last; the row with grouping 1 is the database's total over the range."""
    rows = db.execute(
        "SELECT day, model, sum(cost_micros), count(*), count(*) FILTER (WHERE status >= 400 OR status IS NULL),"
        " sum(input_tokens + cache_read_tokens + cache_write_5m_tokens + cache_write_1h_tokens), sum(output_tokens),"
        " GROUPING(day, model)"
        " FROM spend_usage WHERE day >= %s AND day <= %s AND %s = ANY(groups)"
        " GROUP BY GROUPING SETS ((day, model), ()) ORDER BY day, model",
        (first, last, group),
    )
    return [tuple(r) for r in rows]


def group_members(
    db: Database, group: str, first: date, last: date, limit: int, offset: int
) -> tuple[list[tuple[str, int, int]], int, int]:
    """(one page of (member, spend, requests) made in `group` over the days, most first; members; their total)."""
    rows = db.execute(
        "SELECT user_email, sum(cost_micros) AS spent, count(*), count(*) OVER (), sum(sum(cost_micros)) OVER ()"
        " FROM spend_usage WHERE day >= %s AND day <= %s AND %s = ANY(groups)"
        " GROUP BY user_email ORDER BY spent DESC, user_email LIMIT %s OFFSET %s",
        (first, last, group, limit, offset),
    )
    if rows:
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows], int(rows[0][3]), int(rows[0][4])
    count = db.execute(
        "SELECT count(DISTINCT user_email), coalesce(sum(cost_micros), 0) FROM spend_usage"
        " WHERE day >= %s AND day <= %s AND %s = ANY(groups)",
        (first, last, group),
    )
    return [], int(count[0][0]), int(count[0][1])


def member_standing(
    db: Database, group: str, first: date, day: date, cap_micros: int
) -> tuple[int, int, str | None, int]:
    """A per-member cap of `group` over days first..day: (members who made requests in the group then,
    how many of them are at or over `cap_micros` of their own settled spend, the fullest member, their spend)."""
    rows = db.execute(
        "WITH m AS (SELECT DISTINCT user_email FROM spend_usage WHERE day >= %s AND day <= %s AND %s = ANY(groups)),"
        " s AS (SELECT m.user_email, coalesce((SELECT sum(c.spent_micros) FROM spend_counters c"
        "   WHERE c.scope_key = 'user:' || m.user_email AND c.day >= %s AND c.day <= %s), 0) AS spent FROM m)"
        " SELECT count(*), count(*) FILTER (WHERE spent >= %s),"
        " (array_agg(user_email ORDER BY spent DESC, user_email))[1], coalesce(max(spent), 0) FROM s",
        (first, day, group, first, day, cap_micros),
    )
    r = rows[0]
    return int(r[0]), int(r[1]), (str(r[2]) if r[2] is not None else None), int(r[3])


def client_versions(db: Database, first: date, last: date) -> list[tuple[Any, ...]]:
    """(client, users, sessions, requests, last seen, grouping) of the usage rows of the days, most requests first;
    client NULL is a request recorded without one (before migration 011); grouping 1 is the total row."""
    rows = db.execute(
        "SELECT client, count(DISTINCT user_email), count(DISTINCT session_id), count(*), max(at), GROUPING(client)"
        " FROM spend_usage WHERE day >= %s AND day <= %s"
        " GROUP BY GROUPING SETS ((client), ()) ORDER BY GROUPING(client), count(*) DESC, client",
        (first, last),
    )
    return [tuple(r) for r in rows]


_LATEST_SESSIONS = (
    "WITH latest AS (SELECT DISTINCT ON (session_id) session_id, user_email, at, client, settings_check"
    " FROM spend_usage WHERE day >= %s AND day <= %s AND session_id IS NOT NULL ORDER BY session_id, at DESC)"
)


def session_checks(db: Database, first: date, last: date) -> dict[str, int]:
    """Sessions seen over the days by the verdict of their latest request ('none': no checksum asked or sent)."""
    rows = db.execute(
        _LATEST_SESSIONS + " SELECT coalesce(settings_check, 'none'), count(*) FROM latest GROUP BY 1",  # noqa: S608
        (first, last),
    )
    return {str(r[0]): int(r[1]) for r in rows}


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
