"""The console's figures equal the admin API's cost analytics and the ledger (seeded month of traffic), and
its pages answer quickly on a year of a 1,000-developer organisation (the timings are printed for docs/console.md)."""

from __future__ import annotations

import re
import statistics
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from support import ADMIN_READ_KEY
from support.console import ADMIN, DEV, Console, seed_usage

from common.core import periods
from common.db import pool as store


def _signed_in(console: Console, email: str = ADMIN) -> requests.Session:
    """A console session obtained through the real IdP round trip (the HTTP client follows the redirects)."""
    console.idp.login_as(email)
    browser = requests.Session()
    page = browser.get(console.base + "/admin", timeout=30)
    assert page.status_code == 200 and "Signed in as" in page.text, page.text[:500]
    return browser


def _micros(html: str, element_id: str) -> int:
    found = re.search(rf'id="{element_id}"[^>]*>.*?data-micros="(\d+)"', html, re.S)
    assert found, element_id
    return int(found.group(1))


def _api_cost(console: Console, **params: str) -> dict[str, Any]:
    response = requests.get(
        console.base + "/v1/organizations/analytics/cost",
        params=params,
        headers={"x-api-key": ADMIN_READ_KEY},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _cents_to_micros(cents: str) -> int:
    return int(Decimal(cents) * 10_000)


def test_console_figures_equal_the_cost_analytics_and_the_ledger(console: Console) -> None:
    seed_usage(days=40, users=30, per_day=5)
    browser = _signed_in(console)
    today = periods.today()
    year_start = today - timedelta(days=364)
    api_year = _api_cost(console, starting_at=year_start.isoformat(), group_by="user")
    users_page = browser.get(console.base + "/admin/users?window=yearly", timeout=30).text
    assert _micros(users_page, "users-summary") == _cents_to_micros(api_year["total_amount"]) > 0
    # Every user's row on a page of 25 equals the API's per-user figure; the total is of all 30, not this page.
    rows = dict(re.findall(r'users/([^"]+)">[^<]+</a></td>\s*<td class="num" data-micros="(\d+)"', users_page))
    by_user = {r["user"]: _cents_to_micros(r["amount"]) for r in api_year["data"]}
    assert len(rows) == 25 and len(by_user) == 30
    assert {k.replace("%40", "@"): int(v) for k, v in rows.items()} == {
        k: v for k, v in sorted(by_user.items(), key=lambda kv: (-kv[1], kv[0]))[:25]
    }
    assert "Page 1 of 2" in users_page

    first = today - timedelta(days=29)
    api_30 = _api_cost(console, starting_at=first.isoformat(), group_by="day,model")
    overview = browser.get(console.base + "/admin", timeout=30).text
    assert _micros(overview, "series-totals") == _cents_to_micros(api_30["total_amount"])
    requests_30 = sum(r["requests"] for r in api_30["data"])
    assert f"{requests_30:,} requests" in overview
    month = store.get().execute(
        "SELECT coalesce(sum(cost_micros), 0) FROM spend_usage WHERE day >= %s", (periods.start("monthly", today),)
    )[0][0]
    assert _micros(overview, "org-monthly") == int(month)

    api_user = _api_cost(console, starting_at=first.isoformat(), user=DEV)
    user_page = browser.get(f"{console.base}/admin/users/{DEV}", timeout=30).text
    assert _micros(user_page, "user-totals") == _cents_to_micros(api_user["total_amount"]) > 0


def seed_year(users: int = 1000, per_day: int = 4) -> int:
    """A year of a `users`-developer organisation straight into the ledger tables (usage rows and counters agree)."""
    import pg8000.dbapi

    from common import config

    store.get()  # migrations applied
    url = config.current().store.postgres_url
    assert url is not None
    conn = pg8000.dbapi.connect(**store.parse_url(url))  # no socket timeout: the seed takes a while
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO spend_usage (request_key, request_id, at, day, user_email, groups, model, upstream, endpoint,"
        " status, input_tokens, output_tokens, cache_read_tokens, cost_micros, client, session_id, settings_check)"
        " SELECT gen_random_uuid(), 'seed', d + make_interval(secs => r * 17000 + u), d::date,"
        " 'dev' || u || '@example.com', ARRAY['eng', 'team' || (u %% 20)],"
        " (ARRAY['claude-sonnet-4-5', 'claude-haiku-4-5', 'claude-opus-4-5'])[1 + (u + r) %% 3], 'vertex', 'messages',"
        " CASE WHEN (u * 7 + r) %% 50 = 0 THEN 529 ELSE 200 END, 2000, 300, 10000, 1000 + (u * 13 + r * 7) %% 50000,"
        " 'claude-cli/2.1.' || (330 + u %% 4), 'sess-' || u || '-' || (extract(week FROM d)::int %% 4),"
        " (ARRAY['match', 'match', 'match', 'unknown', 'missing'])[1 + u %% 5]"
        " FROM generate_series(1, %s) u, generate_series(current_date - 364, current_date, interval '1 day') d,"
        " generate_series(1, %s) r",
        (users, per_day),
    )
    cur.execute(
        "INSERT INTO spend_counters (scope_key, day, shard, spent_micros)"
        " SELECT 'user:' || user_email, day, 0, sum(cost_micros) FROM spend_usage GROUP BY 1, 2"
        " UNION ALL SELECT 'org', day, 0, sum(cost_micros) FROM spend_usage GROUP BY 2"
        " UNION ALL SELECT 'group:' || g, day, 0, sum(cost_micros) FROM spend_usage, unnest(groups) g GROUP BY 1, 2"
    )
    cur.execute("ANALYZE")
    cur.execute("SELECT count(*) FROM spend_usage")
    count = int(cur.fetchone()[0])
    conn.close()
    return count


def _fleet_views() -> list[str]:
    """Every view of the fleet page: each window it offers, each verdict filter, a search, later pages of both
    tables, a filter's second page and the sessions' last page (the deepest OFFSET). It has no sort orders."""
    from common.console import pages

    views = []
    for days in pages.FLEET_WINDOWS:
        base = f"/admin/fleet?days={days}"
        views += [base, base + "&q=dev42", base + "&page=2", base + "&upage=2", base + "&check=unknown&page=2"]
        views += [f"{base}&check={check}" for check in pages.CHECKS]
        views.append(base + "&page=last")
    return views


def _median_ms(browser: requests.Session, url: str) -> float:
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        response = browser.get(url, timeout=60)
        samples.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, url
    return statistics.median(samples)


@pytest.mark.slow
def test_console_answers_quickly_on_a_year_of_a_thousand_developers(console: Console) -> None:
    from common.admin import fleet
    from common.console import pages
    from common.spend import store as spend_store

    started = time.perf_counter()
    rows = seed_year()
    seeded = time.perf_counter() - started
    browser = _signed_in(console)
    timings: dict[str, float] = {}
    for path in (
        "/admin",
        "/admin/users",
        "/admin/users?q=dev42",
        "/admin/users?window=yearly&page=20",
        "/admin/users/dev42@example.com",
        "/admin/groups",
        "/admin/groups/team3",
        "/admin/limits",
        "/admin/audit",
    ):
        timings[path] = _median_ms(browser, console.base + path)
    fleet_timings: dict[str, float] = {}
    db = store.get()
    today = periods.today()
    for path in _fleet_views():
        if path.endswith("page=last"):
            days = int(path.split("days=")[1].split("&")[0])
            _, sessions = fleet.latest_sessions(db, today - timedelta(days=days - 1), "", None, 1, 0)
            path = path.replace("page=last", f"page={-(-sessions // pages.PAGE_SIZE)}")
        fleet_timings[path] = _median_ms(browser, console.base + path)
    report = ", ".join(f"{p} {ms:.0f} ms" for p, ms in timings.items())
    fleet_report = "\n".join(f"  {p} {ms:.0f} ms" for p, ms in fleet_timings.items())
    print(f"\nconsole timings (median of 5) on {rows:,} usage rows, seeded in {seeded:.0f} s: {report}")
    print(f"fleet page timings (median of 5):\n{fleet_report}")
    # The fleet tables give the ledger's figures on the year too: the 30-day versions table as the raw query
    # and the verdict counts as the raw queries over spend_usage give them (those the page ran before migration 012).
    first = today - timedelta(days=29)
    assert fleet.client_versions(db, first) == spend_store.client_versions(db, first, today)
    assert fleet.session_checks(db, first) == spend_store.session_checks(db, first, today)
    # The budget is 300 ms. The fleet page is held to it; the other pages get twice that on the shared
    # 2-core test machine before this fails (their figures are in docs/console.md).
    assert max(fleet_timings.values()) <= 300, fleet_report
    assert max(timings.values()) < 600, report
