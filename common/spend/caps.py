"""Which spend caps apply to a caller, how full they are, and what the client is told.

`LIMITS` is this process's copy of the `spend_limits` table (re-read at most
every LIMITS_CACHE_SECONDS, so an uncapped caller costs no round trip);
`applicable_caps()` turns it into the caps of one caller (their own, their
groups', the organisation's), each checked against a counter key;
`standings()` reads how full they are; `allowed_headers()` and `cap_reached()`
are the `anthropic-ratelimit-unified-*` headers and the 429 of PROTOCOL.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from common.core import periods
from common.core.errors import GatewayError
from common.core.periods import Period
from common.db import pool
from common.spend import pricing, store
from common.spend.store import Limit

if TYPE_CHECKING:
    from common.config import Config
    from common.core.identity import Identity

ORG_KEY = "org"
LIMITS_CACHE_SECONDS = 5.0
WARNING_THRESHOLDS = (95, 75)  # percent


def user_key(email: str) -> str:
    return "user:" + email.strip().lower()


def group_key(group: str) -> str:
    return "group:" + group.strip().lower()


# --- limits: this process's copy of the spend_limits table -----------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    by_user: dict[str, list[Limit]]
    by_group: dict[str, list[Limit]]
    org: list[Limit]

    @property
    def empty(self) -> bool:
        return not (self.by_user or self.by_group or self.org)


def load_limits(db: pool.Database) -> Limits:
    """The limits table now, indexed by scope (one statement, no cache)."""
    by_user: dict[str, list[Limit]] = {}
    by_group: dict[str, list[Limit]] = {}
    org: list[Limit] = []
    for limit in store.all_limits(db):
        if limit.scope_type == "user":
            by_user.setdefault(limit.scope_id, []).append(limit)
        elif limit.scope_type == "rbac_group":
            by_group.setdefault(limit.scope_id, []).append(limit)
        else:
            org.append(limit)
    return Limits(by_user, by_group, org)


class LimitsCache:
    """The limits table as this process last read it, re-read once it is `max_age` seconds old.

    Lifetime: one per process (`LIMITS` below), made at import and kept until
    exit; it holds no connection. An admin write in this process calls
    `invalidate()`; other instances see the change within `max_age`. While the
    database is away the last good read keeps deciding who is capped.
    """

    def __init__(self, max_age: float = LIMITS_CACHE_SECONDS) -> None:
        self.max_age = max_age
        self._read: tuple[float, Limits] | None = None  # (monotonic time read, limits)
        self._lock = threading.Lock()

    def get(self) -> Limits:
        cached = self._read
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.max_age:
            return cached[1]
        with self._lock:
            cached = self._read
            if cached is not None and now - cached[0] < self.max_age:
                return cached[1]
            try:
                loaded = load_limits(pool.get())
            except Exception:
                if cached is None:
                    raise
                # The database is away: keep deciding who is capped from the last good
                # read (retried in a second), so uncapped callers are not refused.
                self._read = (time.monotonic() - self.max_age + 1.0, cached[1])
                return cached[1]
            self._read = (time.monotonic(), loaded)
            return loaded

    def expire(self) -> None:
        """Re-read on next use, keeping the last read as the fallback if that fails."""
        with self._lock:
            if self._read is not None:
                self._read = (time.monotonic() - self.max_age, self._read[1])

    def invalidate(self) -> None:
        """Forget the last read entirely (an admin write in this process; tests)."""
        with self._lock:
            self._read = None


LIMITS = LimitsCache()


def cached_limits() -> Limits:
    """This process's limits (see `LimitsCache`)."""
    return LIMITS.get()


def invalidate() -> None:
    """Make this process re-read the limits table on next use."""
    LIMITS.invalidate()


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


def standings(db: pool.Database, caps: Sequence[Cap], day: date) -> list[Standing]:
    """How full each cap is on `day` (one statement)."""
    figures = store.period_spend(db, [c.key for c in caps], [periods.start(c.period, day) for c in caps], day)
    return [Standing(cap, spent, held, day) for cap, (spent, held) in zip(caps, figures, strict=True)]


# --- what the client is told ----------------------------------------------------------------


def _fraction(percent: int) -> str:
    """Whole percent as a fraction with 2 decimals: 75 -> "0.75"."""
    return f"{percent // 100}.{percent % 100:02d}"


def described(states: Sequence[Standing]) -> Standing:
    """The one cap the client is told about: once any is blocked, the blocked one that resets
    last (the wait the user really faces); else the fullest (ties: the one resetting last).
    The headers, the 429 and `/api/oauth/usage` all describe this one."""
    blocked = [s for s in states if s.blocked]
    if blocked:
        return max(blocked, key=lambda s: (s.reset_epoch, s.utilization))
    return max(states, key=lambda s: (s.utilization, s.reset_epoch))


def severity(state: Standing) -> str:
    """normal, warning past the lower threshold (75 %), critical past the upper one (95 %)."""
    if state.reached(WARNING_THRESHOLDS[0]):
        return "critical"
    if state.reached(WARNING_THRESHOLDS[-1]):
        return "warning"
    return "normal"


def allowed_headers(states: Sequence[Standing]) -> dict[str, str]:
    """The `anthropic-ratelimit-unified-*` headers for the described cap (see `described`)."""
    if not states:
        return {}
    fullest = described(states)
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
    # `details.error_code` only when the caller's own allowance is used up (their cap, their
    # per-member group cap, the org's); a pool the whole group shares is not theirs (PROTOCOL).
    details = None if cap.pooled else {"error_code": "spend_limit_reached"}
    message = (
        f"You have reached {cap.describe()} ({pricing.format_usd(cap.cap_micros)}). "
        f"It resets at {_when(reset, now)}. "
        "Ask your gateway administrator to raise the limit if you need to continue before then."
    )
    return GatewayError(429, message, "billing_error", headers, details)
