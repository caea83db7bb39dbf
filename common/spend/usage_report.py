"""`GET /api/oauth/usage`: the caller's own spend standing, in PROTOCOL.md's shape.

For each period the figure shown is the fullest cap that applies to the
caller (the same choice as the response headers); a period without a cap
shows the caller's own spend with a null limit. Amounts are whole cents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Request, Response

from common import config
from common.auth import sessions
from common.core import periods
from common.core.identity import Identity
from common.core.periods import PERIODS, Period
from common.db import pool
from common.http import json_response
from common.spend import caps


def _cents(micros: int) -> int:
    return micros // 10_000


def standing(identity: Identity, now: datetime | None = None) -> dict[str, Any]:
    cfg = config.current()
    moment = now or datetime.now(UTC)
    day = moment.date()
    limits = caps.cached_limits() if cfg.admin is not None else caps.Limits({}, {}, [])
    applicable = caps.applicable_caps(cfg, identity, limits)
    own = [caps.Cap(caps.user_key(identity.email), p, 0, "user", identity.email) for p in PERIODS]
    figures = caps.standings(pool.get(), [*applicable, *own], day)
    capped, mine = figures[: len(applicable)], figures[len(applicable) :]

    per_period: dict[Period, dict[str, Any]] = {}
    limits_out: list[dict[str, Any]] = []
    for period, own_figure in zip(PERIODS, mine, strict=True):
        candidates = [s for s in capped if s.cap.period == period]
        if not candidates:
            per_period[period] = {"limit": None, "used_credits": _cents(own_figure.spent_micros), "utilization": None}
            continue
        fullest = max(candidates, key=lambda s: (s.utilization, s.reset_epoch))
        percent = min(100, fullest.hundredths)
        per_period[period] = {
            "limit": _cents(fullest.cap.cap_micros),
            "used_credits": _cents(fullest.used),
            "utilization": percent,
        }
        limits_out.append(
            {
                "kind": "spend",
                "group": period,
                "percent": percent,
                "resets_at": periods.reset_at(period, day).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "severity": "normal",
                "is_active": True,
            }
        )
    monthly = per_period["monthly"]
    return {
        "extra_usage": {
            "is_enabled": True,
            "monthly_limit": monthly["limit"],
            "used_credits": monthly["used_credits"],
            "utilization": monthly["utilization"],
            "currency": "USD",
            "daily": per_period["daily"],
            "weekly": per_period["weekly"],
        },
        "limits": limits_out,
    }


def usage(request: Request) -> Response:
    cfg = config.current()
    identity = sessions.authenticate(request, cfg)
    return json_response(standing(identity), headers={"Cache-Control": "no-store"})
