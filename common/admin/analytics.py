"""`GET /v1/organizations/analytics/cost`: spend from the usage ledger over a date range.

`starting_at` (inclusive, required) and `ending_at` (exclusive; default the
end of today) are UTC dates; `group_by` is any of user, group,
model, day (repeat the parameter or separate with commas; default day);
`user`, `group`, `model` filter. Grouping by group counts a request once in
each of its caller's groups (so group rows can add up to more than the total).
`total_amount` is the database's sum over the whole filter (each request once),
also when the lines are truncated at MAX_ROWS (`has_more`). The report reads
the daily rollups (`spend_daily`), not the per-request rows.
Amounts are US cents as decimal strings, as in Anthropic's cost report.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Request, Response

from common.admin import api
from common.core import periods
from common.db import pool
from common.http import json_response
from common.spend import pricing, store

DIMENSIONS = store.COST_DIMENSIONS
MAX_DAYS = 366
MAX_ROWS = 10_000


def _group_by(request: Request) -> list[str]:
    raw = [part.strip() for value in request.args.getlist("group_by") for part in value.split(",")]
    raw = [r for r in raw if r] or ["day"]
    for value in raw:
        if value not in DIMENSIONS:
            raise api.invalid("group_by", f"expected any of {', '.join(DIMENSIONS)}, got {value[:40]!r}")
    return list(dict.fromkeys(raw))


def _filter(request: Request, name: str) -> str | None:
    value = request.args.get(name)
    return value.strip().lower() if value else None


def cost(request: Request) -> Response:
    api.caller(request, "read")
    start = api.date_arg(request, "starting_at")
    end = api.date_arg(request, "ending_at", max(start + timedelta(days=1), periods.today() + timedelta(days=1)))
    if end <= start:
        raise api.invalid("ending_at", "must be after starting_at")
    if (end - start).days > MAX_DAYS:
        raise api.invalid("ending_at", f"the range may span at most {MAX_DAYS} days")
    dims = _group_by(request)
    report = store.cost_report(
        pool.get(),
        start,
        end,
        dims,
        user=_filter(request, "user"),
        model=_filter(request, "model"),
        group=_filter(request, "group"),
        limit=MAX_ROWS + 1,
    )
    truncated = len(report.rows) > MAX_ROWS
    data: list[dict[str, Any]] = []
    for row in report.rows[:MAX_ROWS]:
        entry: dict[str, Any] = {
            dim: value.isoformat() if dim == "day" and value is not None else value for dim, value in row.keys.items()
        }
        entry.update(
            {
                "amount": pricing.cents_string(row.cost_micros),
                "currency": "USD",
                "requests": row.requests,
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
                "cache_read_input_tokens": row.cache_read_tokens,
                "cache_creation_input_tokens": row.cache_write_tokens,
            }
        )
        data.append(entry)
    return json_response(
        {
            "data": data,
            "starting_at": start.isoformat(),
            "ending_at": end.isoformat(),
            "group_by": dims,
            "total_amount": pricing.cents_string(report.total_micros),
            "currency": "USD",
            "has_more": truncated,
        }
    )
