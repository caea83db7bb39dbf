"""The cost report's `total_amount` is the database's sum over the whole filter, not over the returned page.

Reproduces finding 12 of issue 14: with more than MAX_ROWS lines the report is
truncated (`has_more`) and `total_amount` used to add up only the lines
returned. Grouped by group, a request counts once in the total even though it
appears in each of its caller's groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from support import ADMIN_READ_KEY, LiveServer, base_config, live_gateway, write_config

from common.admin import analytics
from common.db import pool as store

READ = {"x-api-key": ADMIN_READ_KEY}


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    with live_gateway(write_config(tmp_path, base_config(database_url))) as server:
        yield server


def _seed(users: int, days: int) -> None:
    """One request per user and day, each of a different cost; users in two groups, every tenth in none."""
    store.get().execute(
        "INSERT INTO spend_usage (request_key, at, day, user_email, groups, model, upstream, status,"
        " input_tokens, cost_micros)"
        " SELECT gen_random_uuid(), d, d::date, 'u' || u || '@example.com',"
        " CASE WHEN u %% 10 = 0 THEN '{}'::text[] ELSE ARRAY['eng', 'team' || (u %% 3)] END,"
        " 'claude-haiku-4-5', 'vertex', 200, 100, 1000 + u * 7 + extract(doy FROM d)::int"
        " FROM generate_series(1, %s::int) u, generate_series(date '2026-01-01', date '2026-01-01' + %s::int - 1,"
        " interval '1 day') d",
        (users, days),
    )


def _cost(live: LiveServer, **params: str) -> dict:  # type: ignore[type-arg]
    response = requests.get(live.url + "/v1/organizations/analytics/cost", params=params, headers=READ, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _micros(cents: str) -> int:
    return int(Decimal(cents) * 10_000)


def test_total_amount_covers_the_whole_filter_when_the_report_is_truncated(live: LiveServer) -> None:
    _seed(users=250, days=45)  # 11,250 (user, day) lines > MAX_ROWS
    ledger = int(store.get().execute("SELECT sum(cost_micros) FROM spend_usage")[0][0])
    body = _cost(live, starting_at="2026-01-01", ending_at="2026-03-01", group_by="user,day")
    assert body["has_more"] is True and len(body["data"]) == analytics.MAX_ROWS
    page = sum(_micros(r["amount"]) for r in body["data"])
    assert page < ledger
    assert _micros(body["total_amount"]) == ledger


def test_total_amount_counts_a_request_once_when_grouped_by_group(live: LiveServer) -> None:
    _seed(users=20, days=3)
    db = store.get()
    ledger = int(db.execute("SELECT sum(cost_micros) FROM spend_usage")[0][0])
    eng = int(db.execute("SELECT sum(cost_micros) FROM spend_usage WHERE 'eng' = ANY(groups)")[0][0])
    body = _cost(live, starting_at="2026-01-01", ending_at="2026-01-04", group_by="group")
    rows = {r["group"]: _micros(r["amount"]) for r in body["data"]}
    assert rows["eng"] == eng and None in rows
    assert sum(rows.values()) > ledger  # each request is in each of its groups' lines
    assert _micros(body["total_amount"]) == ledger
    only_eng = _cost(live, starting_at="2026-01-01", ending_at="2026-01-04", group_by="group,user", group="eng")
    assert {r["group"] for r in only_eng["data"]} == {"eng"}
    assert _micros(only_eng["total_amount"]) == eng
