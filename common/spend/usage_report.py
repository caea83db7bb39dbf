"""`GET /api/oauth/usage`: the caller's own spend standing, as Claude Code 2.1.333 reads it.

With a cap, `extra_usage` carries the one cap the response headers describe
(`caps.described`: the fullest, or once blocked the blocked one that resets
last), whatever its period: `monthly_limit` is named so for every period.
`limits` has one row per cap that applies, naming its period (`group`), with
`is_active` only on the row whose dollars `extra_usage` shows, `severity`
normal / warning / critical past 75 % / 95 %, and `resets_at` the instant the
headers' `anthropic-ratelimit-unified-overage-reset` names, to the second.
Without a cap, `limits` is empty and `extra_usage` carries the caller's spend
this UTC month, day (`daily`) and ISO week (`weekly`) with null limits (0 would
be a $0 cap). Amounts are whole cents as numbers; percents are whole percents,
above 100 once over.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Request, Response

from common import config
from common.auth import sessions
from common.core.identity import Identity
from common.core.periods import PERIODS
from common.db import pool
from common.http import json_response
from common.spend import caps


def _cents(micros: int) -> int:
    return micros // 10_000


def _instant(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def standing(identity: Identity, now: datetime | None = None) -> dict[str, Any]:
    cfg = config.current()
    day = (now or datetime.now(UTC)).date()
    limits = caps.cached_limits() if cfg.admin is not None else caps.Limits({}, {}, [])
    applicable = caps.applicable_caps(cfg, identity, limits)
    if not applicable:
        own = [caps.Cap(caps.user_key(identity.email), p, 0, "user", identity.email) for p in PERIODS]
        spent = {s.cap.period: _cents(s.spent_micros) for s in caps.standings(pool.get(), own, day)}
        return {
            "extra_usage": {
                "is_enabled": True,
                "monthly_limit": None,
                "used_credits": spent["monthly"],
                "utilization": None,
                "currency": "USD",
                "daily": {"limit": None, "used_credits": spent["daily"], "utilization": None},
                "weekly": {"limit": None, "used_credits": spent["weekly"], "utilization": None},
            },
            "limits": [],
        }
    states = caps.standings(pool.get(), applicable, day)
    shown = caps.described(states)
    return {
        "extra_usage": {
            "is_enabled": True,
            "monthly_limit": _cents(shown.cap.cap_micros),
            "used_credits": _cents(shown.used),
            "utilization": shown.hundredths,
            "currency": "USD",
        },
        "limits": [
            {
                "kind": "spend",
                "group": s.cap.period,
                "percent": s.hundredths,
                "resets_at": _instant(s.reset_epoch),
                "severity": caps.severity(s),
                "is_active": s is shown,
            }
            for s in states
        ],
    }


def usage(request: Request) -> Response:
    cfg = config.current()
    identity = sessions.authenticate(request, cfg)
    return json_response(standing(identity), headers={"Cache-Control": "no-store"})
