"""The spend ledger: caps checked before proxying, real cost settled after.

`reserve()` runs before the upstream call: it finds the caps that apply to
the caller (from a per-instance cache of `spend_limits`, so an uncapped caller
costs no round trip), and reserves an estimate against all of them in one
statement (`spend_reserve`, migration 003). At a cap it raises the 429 of
PROTOCOL.md; otherwise it returns the `anthropic-ratelimit-unified-*` headers
for a capped caller. `settle()` runs after the upstream's last byte: it prices
the upstream's own usage figures, writes the usage row, adds the cost to the
per-day counters and drops the reservation in one statement
(`spend_settle`; settles that arrive together share one `spend_settle_batch`
statement, see `_GroupCommit`). A settle the database refuses is queued in this process and
retried (in the background and before the next settle), so no usage is lost
while the database is away; the ledger row's key makes a retry count once.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from common.config import Config
from common.core import logs, periods
from common.core.errors import GatewayError
from common.core.periods import Period
from common.db import pool as store
from common.spend import pricing

if TYPE_CHECKING:
    from common.core.identity import Identity
    from common.core.usage import RequestInfo, Usage

ORG_KEY = "org"
# Keys whose check is optimistic (not locked): locking the org key would
# serialise every request of the organisation (see docs/spend.md).
UNLOCKED_KEYS = frozenset({ORG_KEY})
# Writes to shared keys (org, group pools) are spread over this many counter rows.
SHARDS = 16
LIMITS_CACHE_SECONDS = 5.0
BYTES_PER_TOKEN = 4  # a rough upper bound of tokens per request byte for the estimate
SWEEP_PROBABILITY = 0.02  # settles that also sweep expired holds
PENDING_MAX = 10_000  # queued settles kept while the database is away
WARNING_THRESHOLDS = (95, 75)  # percent


def user_key(email: str) -> str:
    return "user:" + email.strip().lower()


def group_key(group: str) -> str:
    return "group:" + group.strip().lower()


# --- limits (a per-instance cache of the spend_limits table) -------------------------


@dataclass(frozen=True, slots=True)
class Limit:
    id: str
    scope_type: str  # user | rbac_group | organization
    scope_id: str
    period: Period
    amount_micros: int
    pooled: bool


@dataclass(frozen=True, slots=True)
class Limits:
    by_user: dict[str, list[Limit]]
    by_group: dict[str, list[Limit]]
    org: list[Limit]

    @property
    def empty(self) -> bool:
        return not (self.by_user or self.by_group or self.org)


_limits: tuple[float, Limits] | None = None
_limits_lock = threading.Lock()


def load_limits(db: store.Database) -> Limits:
    rows = db.execute("SELECT id, scope_type, scope_id, period, amount_micros, pooled FROM spend_limits")
    by_user: dict[str, list[Limit]] = {}
    by_group: dict[str, list[Limit]] = {}
    org: list[Limit] = []
    for row in rows:
        limit = Limit(str(row[0]), str(row[1]), str(row[2]), row[3], int(row[4]), bool(row[5]))
        if limit.scope_type == "user":
            by_user.setdefault(limit.scope_id, []).append(limit)
        elif limit.scope_type == "rbac_group":
            by_group.setdefault(limit.scope_id, []).append(limit)
        else:
            org.append(limit)
    return Limits(by_user, by_group, org)


def cached_limits() -> Limits:
    """The limits table, re-read at most every LIMITS_CACHE_SECONDS per instance."""
    global _limits
    cached = _limits
    now = time.monotonic()
    if cached is not None and now - cached[0] < LIMITS_CACHE_SECONDS:
        return cached[1]
    with _limits_lock:
        cached = _limits
        if cached is not None and now - cached[0] < LIMITS_CACHE_SECONDS:
            return cached[1]
        try:
            loaded = load_limits(store.get())
        except Exception:
            if cached is None:
                raise
            # The database is away: keep deciding who is capped from the last good
            # read, so uncapped callers are not refused (the reserve still fails).
            _limits = (time.monotonic() - LIMITS_CACHE_SECONDS + 1.0, cached[1])
            return cached[1]
        _limits = (time.monotonic(), loaded)
        return loaded


def invalidate_limits() -> None:
    """Forget the cache (an admin write in this process; tests)."""
    global _limits
    with _limits_lock:
        _limits = None


# --- which caps apply ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cap:
    key: str  # the counter key checked
    period: Period
    cap_micros: int
    scope: str  # user | rbac_group | organization
    scope_id: str
    pooled: bool = False

    def describe(self) -> str:
        if self.scope == "user":
            return f"your {self.period} spend limit"
        if self.scope == "rbac_group" and self.pooled:
            return f"the {self.period} spend limit shared by group {self.scope_id}"
        if self.scope == "rbac_group":
            return f"the {self.period} per-member spend limit of group {self.scope_id}"
        return f"the organization's {self.period} spend limit"


def applicable_caps(cfg: Config, identity: Identity, limits: Limits) -> list[Cap]:
    """Every cap that applies to the caller: their own, their groups' (per member:
    min or max across groups per `admin.group_limit_mode`; pooled: each), the org's."""
    if limits.empty:
        return []
    email = identity.email.strip().lower()
    ukey = user_key(email)
    caps: list[Cap] = [
        Cap(ukey, limit.period, limit.amount_micros, "user", email) for limit in limits.by_user.get(email, ())
    ]
    mode = cfg.admin.group_limit_mode if cfg.admin is not None else "min"
    per_member: dict[Period, Limit] = {}
    for group in dict.fromkeys(g.strip().lower() for g in identity.groups):
        for limit in limits.by_group.get(group, ()):
            if limit.pooled:
                caps.append(Cap(group_key(group), limit.period, limit.amount_micros, "rbac_group", group, True))
                continue
            best = per_member.get(limit.period)
            if (
                best is None
                or (mode == "min" and limit.amount_micros < best.amount_micros)
                or (mode == "max" and limit.amount_micros > best.amount_micros)
            ):
                per_member[limit.period] = limit
    caps.extend(
        Cap(ukey, period, limit.amount_micros, "rbac_group", limit.scope_id) for period, limit in per_member.items()
    )
    caps.extend(Cap(ORG_KEY, limit.period, limit.amount_micros, "organization", "") for limit in limits.org)
    return caps


# --- standing: how full each cap is ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Standing:
    cap: Cap
    spent_micros: int
    held_micros: int
    day: date

    @property
    def used(self) -> int:
        return self.spent_micros + self.held_micros

    @property
    def utilization(self) -> float:
        # A display figure only (headers, percent); decisions compare integers.
        return self.used / self.cap.cap_micros if self.cap.cap_micros > 0 else 1.0

    def reached(self, percent: int) -> bool:
        """Has `used` reached `percent` % of the cap? (integers: no float edge cases)"""
        return self.used * 100 >= percent * self.cap.cap_micros

    @property
    def hundredths(self) -> int:
        """Utilization in whole percent, rounded down."""
        return self.used * 100 // self.cap.cap_micros if self.cap.cap_micros > 0 else 100

    @property
    def blocked(self) -> bool:
        return self.used >= self.cap.cap_micros

    @property
    def reset_epoch(self) -> int:
        return periods.reset_epoch(self.cap.period, self.day)


def period_spend(db: store.Database, keys: Sequence[str], starts: Sequence[date], day: date) -> list[tuple[int, int]]:
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


def standings(db: store.Database, caps: Sequence[Cap], day: date) -> list[Standing]:
    figures = period_spend(db, [c.key for c in caps], [periods.start(c.period, day) for c in caps], day)
    return [Standing(cap, spent, held, day) for cap, (spent, held) in zip(caps, figures, strict=True)]


# --- reserve ------------------------------------------------------------------------------


@dataclass(slots=True)
class Reservation:
    key: str  # uuid: the ledger row's idempotency key and the holds' id
    at: datetime
    day: date
    caps: list[Cap] = field(default_factory=list)
    estimate_micros: int = 0
    held: bool = False
    # Each cap's standing as the reserve saw it (before this request's hold): budget alerts
    # decide from it, with no round trip, whether a settle can be near a threshold.
    standings: list[Standing] = field(default_factory=list)


def estimate_micros(cfg: Config, info: RequestInfo) -> int:
    """An upper-ish estimate of a request's cost: every input byte / 4 as an input
    token, and `max_tokens` output tokens (the upstream cannot produce more)."""
    from common.core.usage import Usage

    guess = Usage(input_tokens=-(-max(0, info.input_bytes) // BYTES_PER_TOKEN), output_tokens=max(0, info.max_tokens))
    return max(1, price_book_cost(cfg, info, guess))


def price_book_cost(cfg: Config, info: RequestInfo, usage: Usage) -> int:
    book = pricing.book(cfg)
    model = info.model
    _, known = book.price(model, info.upstream) if model else (None, False)
    if not known and info.upstream_model:
        upstream_price, upstream_known = book.price(info.upstream_model, info.upstream)
        if upstream_known:
            return pricing.cost_micros(upstream_price, usage, book.multiplier_num, book.multiplier_den)
    return book.cost_micros(model or info.upstream_model, usage, info.upstream)


def _now() -> datetime:
    return datetime.now(UTC)


def reserve(cfg: Config, info: RequestInfo) -> tuple[Reservation, dict[str, str]]:
    """Reserve an estimate against every cap that applies; 429 `billing_error` at a cap."""
    at = _now()
    reservation = Reservation(key=str(uuid.uuid4()), at=at, day=at.date())
    if cfg.admin is None or info.endpoint != "messages":
        return reservation, {}
    try:
        limits = cached_limits()
        caps = applicable_caps(cfg, info.identity, limits)
        if not caps:
            return reservation, {}
        reservation.caps = caps
        reservation.estimate_micros = estimate_micros(cfg, info)
        ttl = cfg.enforcement.reservation_ttl_seconds if cfg.enforcement else 900
        lock_keys = sorted({c.key for c in caps if c.key not in UNLOCKED_KEYS})
        rows = store.get().execute(
            "SELECT spent, held, admitted FROM spend_reserve(%s::uuid, %s::text[], %s::date[], %s::bigint[],"
            " %s::date, %s::bigint, %s::integer, %s::text[])",
            (
                reservation.key,
                [c.key for c in caps],
                [periods.start(c.period, reservation.day) for c in caps],
                [c.cap_micros for c in caps],
                reservation.day,
                reservation.estimate_micros,
                ttl,
                lock_keys,
            ),
        )
    except GatewayError:
        raise
    except Exception as exc:
        return _unavailable(cfg, reservation, exc)
    states = [Standing(cap, int(r[0]), int(r[1]), reservation.day) for cap, r in zip(caps, rows, strict=True)]
    admitted = bool(rows[0][2]) if rows else True
    if not admitted:
        blocked = [s for s in states if s.blocked] or states
        raise cap_reached(max(blocked, key=lambda s: (s.reset_epoch, s.utilization)), at)
    reservation.held = True
    reservation.standings = states
    return reservation, allowed_headers(states)


def _unavailable(cfg: Config, reservation: Reservation, exc: Exception) -> tuple[Reservation, dict[str, str]]:
    fail_closed = cfg.enforcement.fail_closed_on_error if cfg.enforcement else False
    logs.warning(
        "spend ledger unreadable; " + ("refusing the request" if fail_closed else "letting the request through"),
        error=f"{type(exc).__name__}: {store._clean(exc)}",
        key="enforcement.fail_closed_on_error",
    )
    if fail_closed:
        raise GatewayError(
            429,
            "The gateway cannot check your spend limit right now (its ledger is unavailable), so the request "
            "was refused. Try again in a few minutes; if this persists, contact your gateway administrator.",
            "billing_error",
            {
                "x-should-retry": "false",
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-overage-disabled-reason": "fetch_error",
            },
        )
    reservation.caps = []
    return reservation, {}


def _fraction(percent: int) -> str:
    """Whole percent as a fraction with 2 decimals: 75 -> "0.75"."""
    return f"{percent // 100}.{percent % 100:02d}"


def allowed_headers(states: Sequence[Standing]) -> dict[str, str]:
    """The `anthropic-ratelimit-unified-*` headers for the fullest cap (ties: the one resetting last)."""
    if not states:
        return {}
    fullest = max(states, key=lambda s: (s.utilization, s.reset_epoch))
    status = "allowed_warning" if fullest.reached(WARNING_THRESHOLDS[-1]) else "allowed"
    headers = {
        "anthropic-ratelimit-unified-status": status,
        "anthropic-ratelimit-unified-representative-claim": "overage",
        "anthropic-ratelimit-unified-overage-status": status,
        "anthropic-ratelimit-unified-overage-utilization": _fraction(min(fullest.hundredths, 99)),
        "anthropic-ratelimit-unified-reset": str(fullest.reset_epoch),
        "anthropic-ratelimit-unified-overage-reset": str(fullest.reset_epoch),
    }
    for threshold in WARNING_THRESHOLDS:
        if fullest.reached(threshold):
            headers["anthropic-ratelimit-unified-overage-surpassed-threshold"] = _fraction(threshold)
            break
    return headers


def _when(reset: datetime, now: datetime) -> str:
    seconds = max(0, int((reset - now).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    span = f"{hours // 24}d {hours % 24}h" if hours >= 48 else f"{hours}h {minutes}m"
    return f"{reset.strftime('%Y-%m-%d %H:%M')} UTC (in {span})"


def cap_reached(state: Standing, now: datetime) -> GatewayError:
    """The 429 of PROTOCOL.md for a caller at `state`'s cap."""
    cap = state.cap
    reset = periods.reset_at(cap.period, state.day)
    retry_after = max(1, math.ceil((reset - now).total_seconds()))
    headers = {
        "retry-after": str(retry_after),
        "x-should-retry": "false",
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-reset": str(state.reset_epoch),
        "anthropic-ratelimit-unified-overage-reset": str(state.reset_epoch),
        "anthropic-ratelimit-unified-overage-utilization": "1",
        "anthropic-ratelimit-unified-overage-surpassed-threshold": "1",
        "anthropic-ratelimit-unified-overage-period": cap.period,
        "anthropic-ratelimit-unified-overage-disabled-reason": "org_spend_cap_reached",
    }
    if cap.pooled:
        headers["anthropic-ratelimit-unified-overage-scope"] = "group_pool"
    message = (
        f"You have reached {cap.describe()} ({pricing.format_usd(cap.cap_micros)}). "
        f"It resets at {_when(reset, now)}. "
        "Ask your gateway administrator to raise the limit if you need to continue before then."
    )
    return GatewayError(429, message, "billing_error", headers)


# --- settle -------------------------------------------------------------------------------

_SETTLE_SQL = (
    "SELECT spend_settle(%s::uuid, %s, %s, %s::date, %s, %s, %s::text[], %s, %s, %s, %s, %s, %s,"
    " %s, %s, %s, %s, %s, %s, %s::text[], %s::smallint[], %s)"
)


def settle_args(
    cfg: Config, info: RequestInfo, reservation: Reservation | None, usage: Usage, status: int
) -> tuple[int, tuple[Any, ...]]:
    """(cost, arguments of spend_settle) for one request."""
    if reservation is None:
        at = _now()
        reservation = Reservation(key=str(uuid.uuid4()), at=at, day=at.date())
    cost = price_book_cost(cfg, info, usage) if info.endpoint == "messages" else 0
    identity = info.identity
    groups = sorted({g.strip().lower() for g in identity.groups if g.strip()})
    counters = [(user_key(identity.email), 0), (ORG_KEY, random.randrange(SHARDS))]  # noqa: S311 (load spreading)
    counters += [(group_key(g), random.randrange(SHARDS)) for g in groups]  # noqa: S311
    counters.sort()
    args = (
        reservation.key,
        info.request_id,
        reservation.at,
        reservation.day,
        identity.email.strip().lower(),
        identity.sub,
        groups,
        info.model,
        info.upstream,
        info.upstream_model,
        info.billing_group,
        info.endpoint,
        status,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_5m_input_tokens,
        usage.cache_creation_1h_input_tokens,
        cost,
        [k for k, _ in counters],
        [s for _, s in counters],
        random.random() < SWEEP_PROBABILITY,  # noqa: S311
    )
    return cost, args


_SETTLE_BATCH_SQL = "SELECT spend_settle_batch(%s::jsonb)"
BATCH_MAX = 64
_BATCH_FIELDS = (
    "reservation", "request_id", "at", "day", "user", "sub", "groups", "model", "upstream", "upstream_model",
    "billing_group", "endpoint", "status", "input", "output", "cache_read", "cache_5m", "cache_1h", "cost",
    "keys", "shards", "sweep",
)  # fmt: skip


class _Waiter:
    __slots__ = ("args", "done", "error", "lead")

    def __init__(self, args: tuple[Any, ...]) -> None:
        self.args = args
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.lead = False


class _GroupCommit:
    """Settles that arrive while another is in flight share its next statement.

    One settle at a time per instance talks to the database (the leader); the
    ones that arrive meanwhile wait, and the next leader writes all of them in
    one `spend_settle_batch` statement. Every caller still returns only once
    its own usage is committed (Cloud Run throttles CPU after the response, so
    nothing may be left for later), but under load the per-statement cost of
    the driver and the server is shared. A lone settle uses `spend_settle`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._busy = False

    def settle(self, db: store.Database, args: tuple[Any, ...]) -> None:
        waiter = _Waiter(args)
        with self._lock:
            self._queue.append(waiter)
            lead = not self._busy
            self._busy = True
        if not lead:
            waiter.done.wait()
            if not waiter.lead:
                if waiter.error is not None:
                    raise waiter.error
                return
        with self._lock:
            batch = self._queue[:BATCH_MAX]
            del self._queue[:BATCH_MAX]
        error: BaseException | None = None
        try:
            if len(batch) == 1:
                db.execute(_SETTLE_SQL, batch[0].args)
            else:
                items = [dict(zip(_BATCH_FIELDS, w.args, strict=True)) for w in batch]
                db.execute(_SETTLE_BATCH_SQL, (json.dumps(items, default=_json_value),))
        except Exception as exc:
            error = exc
        finally:
            for other in batch:
                if other is not waiter:
                    other.error = error
                    other.done.set()
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._busy = False
        if error is not None:
            raise error


def _json_value(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


_group_commit = _GroupCommit()


def settle(cfg: Config, info: RequestInfo, reservation: Any, usage: Usage, status: int) -> int:
    """Record the request's usage; return its cost in micro-dollars. Never raises."""
    if info.endpoint != "messages" and not (isinstance(reservation, Reservation) and reservation.held):
        return 0  # count_tokens is free and was never reserved: no round trip
    cost, args = settle_args(cfg, info, reservation if isinstance(reservation, Reservation) else None, usage, status)
    try:
        db = store.get()
        _group_commit.settle(db, args)
    except Exception as exc:
        _pending.add(args, exc)
        return cost
    if _pending.size():
        _pending.flush(db, budget=50)
    return cost


class _Pending:
    """Settles the database refused, retried until it takes them (bounded; drops are logged loudly)."""

    def __init__(self, capacity: int = PENDING_MAX) -> None:
        self._items: deque[tuple[Any, ...]] = deque()
        self._capacity = capacity
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.dropped = 0

    def size(self) -> int:
        return len(self._items)

    def add(self, args: tuple[Any, ...], exc: BaseException) -> None:
        with self._lock:
            if len(self._items) >= self._capacity:
                self.dropped += 1
                logs.error(
                    "SPEND USAGE LOST: the settle queue is full while the database is unavailable",
                    capacity=self._capacity,
                    dropped_total=self.dropped,
                    user=args[4],
                    cost_micros=args[18],
                )
                return
            self._items.append(args)
            queued = len(self._items)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._retry_loop, name="spend-settle-retry", daemon=True)
                self._thread.start()
        logs.warning(
            "spend settle queued; the database refused it",
            error=f"{type(exc).__name__}: {store._clean(exc)}",
            queued=queued,
        )

    def flush(self, db: store.Database | None = None, budget: int | None = None) -> int:
        """Write queued settles in order; stop at the first failure. Returns how many were written."""
        written = 0
        while budget is None or written < budget:
            with self._lock:
                if not self._items:
                    break
                args = self._items[0]
            try:
                (db or store.get()).execute(_SETTLE_SQL, args)
            except Exception:
                break
            with self._lock:
                if self._items and self._items[0] is args:
                    self._items.popleft()
            written += 1
        if written:
            logs.info("queued spend settles written", written=written, still_queued=len(self._items))
        return written

    def _retry_loop(self) -> None:
        delay = 1.0
        while self._items:
            self._wake.wait(delay)
            self._wake.clear()
            before = len(self._items)
            self.flush()
            delay = 1.0 if len(self._items) < before else min(delay * 2, 30.0)

    def wake(self) -> None:
        self._wake.set()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_pending = _Pending()


def pending_settles() -> int:
    return _pending.size()


def flush_pending() -> int:
    return _pending.flush()
