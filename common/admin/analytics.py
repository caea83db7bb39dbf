"""`GET /v1/organizations/analytics/cost`: spend from the usage ledger over a date range.

`starting_at` (inclusive, required) and `ending_at` (exclusive; default the
end of today) are UTC dates; `group_by` is any of user, group,
model, day (repeat the parameter or separate with commas; default day);
`user`, `group`, `model` filter. Grouping by group counts a request once in
each of its caller's groups (so group rows can add up to more than the total).
Amounts are US cents as decimal strings, as in Anthropic's cost report.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Request, Response

from common.admin import api
from common.core import periods
from common.db import pool as store
from common.http import json_response
from common.spend import pricing

DIMENSIONS = {
    "user": "u.user_email",
    "group": "g.grp",
    "model": "u.model",
    "day": "u.day",
}
MAX_DAYS = 366
MAX_ROWS = 10_000


def _group_by(request: Request) -> list[str]:
    raw = [part.strip() for value in request.args.getlist("group_by") for part in value.split(",")]
    raw = [r for r in raw if r] or ["day"]
    for value in raw:
        if value not in DIMENSIONS:
            raise api.invalid("group_by", f"expected any of {', '.join(DIMENSIONS)}, got {value[:40]!r}")
    return list(dict.fromkeys(raw))


def cost(request: Request) -> Response:
    api.caller(request, "read")
    start = api.date_arg(request, "starting_at")
    end = api.date_arg(request, "ending_at", max(start + timedelta(days=1), periods.today() + timedelta(days=1)))
    if end <= start:
        raise api.invalid("ending_at", "must be after starting_at")
    if (end - start).days > MAX_DAYS:
        raise api.invalid("ending_at", f"the range may span at most {MAX_DAYS} days")
    dims = _group_by(request)
    where = ["u.day >= %s", "u.day < %s"]
    args: list[Any] = [start, end]
    for name, column in (("user", "u.user_email"), ("model", "u.model")):
        value = request.args.get(name)
        if value:
            where.append(f"{column} = %s")
            args.append(value.strip().lower())
    group_filter = request.args.get("group")
    if group_filter:
        where.append("%s = ANY(u.groups)")
        args.append(group_filter.strip().lower())
    needs_groups = "group" in dims
    source = (
        "spend_usage u LEFT JOIN LATERAL unnest(CASE WHEN cardinality(u.groups) = 0 THEN ARRAY[NULL::text]"
        " ELSE u.groups END) AS g(grp) ON TRUE"
        if needs_groups
        else "spend_usage u"
    )
    if needs_groups and group_filter:
        where.append("g.grp = %s")
        args.append(group_filter.strip().lower())
    columns = [DIMENSIONS[d] for d in dims]
    sql = (
        f"SELECT {', '.join(columns)}, sum(u.cost_micros), count(*), sum(u.input_tokens), sum(u.output_tokens),"  # noqa: S608
        " sum(u.cache_read_tokens), sum(u.cache_write_5m_tokens + u.cache_write_1h_tokens)"
        f" FROM {source} WHERE {' AND '.join(where)}"
        f" GROUP BY {', '.join(columns)} ORDER BY {', '.join(columns)} LIMIT %s"
    )
    rows = store.get().execute(sql, (*args, MAX_ROWS + 1))
    truncated = len(rows) > MAX_ROWS
    data: list[dict[str, Any]] = []
    total = 0
    for row in rows[:MAX_ROWS]:
        entry: dict[str, Any] = {}
        for i, dim in enumerate(dims):
            value = row[i]
            entry[dim] = value.isoformat() if dim == "day" and value is not None else value
        n = len(dims)
        micros = int(row[n])
        total += micros
        entry.update(
            {
                "amount": pricing.cents_string(micros),
                "currency": "USD",
                "requests": int(row[n + 1]),
                "input_tokens": int(row[n + 2]),
                "output_tokens": int(row[n + 3]),
                "cache_read_input_tokens": int(row[n + 4]),
                "cache_creation_input_tokens": int(row[n + 5]),
            }
        )
        data.append(entry)
    return json_response(
        {
            "data": data,
            "starting_at": start.isoformat(),
            "ending_at": end.isoformat(),
            "group_by": dims,
            "total_amount": pricing.cents_string(total),
            "currency": "USD",
            "has_more": truncated,
        }
    )
