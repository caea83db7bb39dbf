"""The groups and fleet pages in a real headless Chromium, their figures against the database and the cost API.

Fleet: real /v1/messages requests through the gateway (upstream stand-in) from
three sign-in sessions: one sends the checksum it was served, one another
value, one none although its policy pushes CLAUDE_CODE_GATEWAY_HINT_HEADERS.
The page shows each session's verdict and client version, and the header's
value is stored and logged nowhere.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from support import ADMIN_READ_KEY, base_config, deep_merge, free_port, live_gateway, write_config
from support.console import ADMIN, DEV, Console, seed_usage, shot, sign_in
from support.logcapture import capture_logs

from common.core import periods
from common.db import pool as store
from common.policy import hints
from common.spend import caps
from gateway.standins import idp as idp_standin
from gateway.standins import upstream as standin_module

CLI = "claude-cli/2.1.333 (external, cli)"


def _cost(base: str, **params: str) -> int:
    response = requests.get(
        base + "/v1/organizations/analytics/cost", params=params, headers={"x-api-key": ADMIN_READ_KEY}, timeout=30
    )
    assert response.status_code == 200, response.text
    return int(Decimal(response.json()["total_amount"]) * 10_000)


def test_groups_list_and_group_page_equal_the_database_and_the_cost_api(console: Console, context: Any) -> None:
    seed_usage(days=35, users=12, per_day=6)
    db = store.get()
    today = periods.today()
    month = periods.start("monthly", today)
    # A pooled daily cap and a per-member monthly cap on `eng`; DEV alone is in `ml`.
    db.execute(
        "INSERT INTO spend_limits (id, scope_type, scope_id, period, amount_micros, pooled) VALUES"
        " ('splim_pool', 'rbac_group', 'eng', 'daily', 50000000, true),"
        " ('splim_member', 'rbac_group', 'eng', 'monthly', 2000000, false)"
    )
    caps.invalidate()
    page = context.new_page()
    sign_in(page, console, ADMIN, "/admin/groups")

    counters = dict(
        db.execute(
            "SELECT substr(scope_key, 7), sum(spent_micros) FROM spend_counters"
            " WHERE scope_key LIKE 'group:%%' AND day >= %s GROUP BY 1",
            (month,),
        )
    )
    assert set(counters) == {"eng", "ml"}
    summary = page.locator("#groups-summary strong")
    assert int(summary.get_attribute("data-micros")) == sum(int(v) for v in counters.values())
    for name, spent in counters.items():
        cell = page.locator(f"tr[data-group='{name}'] td.num").first
        assert int(cell.get_attribute("data-micros")) == int(spent)
    assert page.locator("tr[data-group='eng'] td.num").nth(1).inner_text() == "2"
    page.fill("input[name=q]", "m")
    page.click("form.filters button")
    assert page.locator("#groups tbody tr").count() == 1  # "ml" only
    shot(page, "groups")

    page.goto(console.base + "/admin/groups/eng")
    first = today - timedelta(days=29)
    # Spend by day and model: the cost API's total for the group over the 30 days, to the micro-dollar.
    chart_total = int(page.locator("#group-totals strong").get_attribute("data-micros"))
    assert chart_total == _cost(console.base, starting_at=first.isoformat(), group="eng") > 0
    # The pooled cap's standing is the group's counters today.
    pooled_used = db.execute(
        "SELECT coalesce(sum(spent_micros), 0) FROM spend_counters WHERE scope_key = 'group:eng' AND day = %s",
        (today,),
    )[0][0]
    pooled = page.locator("tr[data-cap='rbac_group-pooled-daily']")
    assert int(pooled.locator("td.num").first.get_attribute("data-micros")) == int(pooled_used)
    assert pooled.locator(".pct").inner_text() == f"{100 * int(pooled_used) / 50_000_000:.1f} %"
    # The per-member cap: the fullest member's own monthly spend, and how many are at $2.
    per_user = {
        str(r[0]): int(r[1])
        for r in db.execute(
            "SELECT substr(scope_key, 6), sum(spent_micros) FROM spend_counters"
            " WHERE scope_key LIKE 'user:%%' AND day >= %s GROUP BY 1",
            (month,),
        )
    }
    member = page.locator("tr[data-cap='rbac_group-member-monthly']")
    assert int(member.locator("td.num").first.get_attribute("data-micros")) == max(per_user.values())
    at_cap = sum(1 for v in per_user.values() if v >= 2_000_000)
    assert f"{at_cap} of {len(per_user)} members at the cap" in member.inner_text()
    # Top members: 12 members in all (totals by the database over both pages), 25 a page.
    members_total = int(page.locator("#members-summary strong").get_attribute("data-micros"))
    assert members_total == _cost(console.base, starting_at=month.isoformat(), group="eng")
    assert f"{len(per_user)} members spent" in page.locator("#members-summary").inner_text()
    shot(page, "group")


@pytest.fixture
def fleet_console(tmp_path: Path, database_url: str, idp: idp_standin.Idp) -> Iterator[tuple[Console, Any]]:
    upstream = standin_module.start()
    port = free_port()
    data = deep_merge(
        base_config(
            database_url, public_url=f"http://127.0.0.1:{port}", issuer=idp.issuer, upstream_url=upstream.base_url
        ),
        {
            "admin": {"admin_groups": ["claude-admins"], "viewer_groups": ["finance"]},
            "managed": {
                "policies": [
                    {
                        "name": "everyone",
                        "settings": {"availableModels": ["sonnet"], "env": {hints.HINT_ENV: "1"}},
                    }
                ]
            },
        },
    )
    path = write_config(tmp_path, data)
    idp.set_user(ADMIN, sub="boss-1", groups=["claude-admins", "eng"], email_verified=True, disabled=False)
    hints.forget()
    try:
        with live_gateway(path, port=port) as live:
            caps.invalidate()
            yield Console(live.url, idp, path), upstream
    finally:
        upstream.stop()
        hints.forget()


def _message(base: str, token: str, checksum: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json", "User-Agent": CLI}
    if checksum is not None:
        headers[hints.HEADER] = checksum
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
    response = requests.post(base + "/v1/messages", data=json.dumps(body), headers=headers, timeout=30)
    assert response.status_code == 200, response.text


def test_fleet_shows_versions_last_seen_and_each_sessions_managed_settings(
    fleet_console: tuple[Console, Any], context: Any
) -> None:
    console, _ = fleet_console
    from common import config
    from common.auth import sessions

    cfg = config.current()
    tokens = {}
    for email, sid in ((DEV, "sess-ok"), ("ann@example.com", "sess-edited"), ("bob@example.com", "sess-none")):
        tokens[sid], _ = sessions.issue(cfg, sub=email, email=email, groups=["eng"], session_id=sid)
    served = requests.get(
        console.base + "/managed/settings", headers={"Authorization": f"Bearer {tokens['sess-ok']}"}, timeout=30
    ).json()["checksum"]
    assert served.startswith("sha256:")
    other = "sha256:" + uuid.uuid4().hex * 2  # what a machine with its own env entries might send
    with capture_logs() as logs:
        _message(console.base, tokens["sess-ok"], served)
        _message(console.base, tokens["sess-ok"], f'"{served}"')  # quoted as in If-None-Match: the same value
        _message(console.base, tokens["sess-edited"], other)
        _message(console.base, tokens["sess-none"], None)
    db = store.get()
    rows: list[Any] = []
    for _ in range(100):  # the group commit writes the usage rows just after the responses
        rows = db.execute("SELECT session_id, client, settings_check FROM spend_usage ORDER BY id")
        if len(rows) == 4:
            break
        time.sleep(0.05)
    assert sorted(tuple(r) for r in rows) == sorted(
        [
            ("sess-ok", "claude-cli/2.1.333", "match"),
            ("sess-ok", "claude-cli/2.1.333", "match"),
            ("sess-edited", "claude-cli/2.1.333", "unknown"),
            ("sess-none", "claude-cli/2.1.333", "missing"),
        ]
    )
    # The header is sensitive: its value is in no log line and no usage row, only the verdict is.
    text = json.dumps(logs.lines())
    assert other[7:] not in text and served[7:] not in text
    dump = db.execute(
        "SELECT count(*) FROM spend_usage WHERE row_to_json(spend_usage)::text LIKE %s", (f"%{other[7:]}%",)
    )
    assert dump[0][0] == 0

    page = context.new_page()
    sign_in(page, console, ADMIN, "/admin/fleet")
    version = page.locator("tr[data-client='claude-cli/2.1.333']")
    assert version.locator("td").first.inner_text().startswith("Claude Code 2.1.333")
    assert [version.locator("td.num").nth(i).inner_text() for i in range(3)] == ["3", "3", "4"]
    checks = {
        k: page.locator(f"#checks li[data-check='{k}'] strong").inner_text() for k in ("match", "unknown", "missing")
    }
    assert checks == {"match": "1", "unknown": "1", "missing": "1"}
    assert page.locator("#sessions tr[data-session='sess-ok']").get_attribute("data-check") == "match"
    assert page.locator("#sessions tr[data-session='sess-edited']").get_attribute("data-check") == "unknown"
    assert page.locator("#sessions tr[data-session='sess-none']").get_attribute("data-check") == "missing"
    last = db.execute("SELECT max(at) FROM spend_usage WHERE user_email = %s", (DEV,))[0][0]
    assert last.strftime("%Y-%m-%d %H:%M UTC") in page.locator(f"#seen tr[data-user='{DEV}']").inner_text()
    assert "3 users" in page.locator("#seen-summary").inner_text()
    assert served not in page.content() and other not in page.content()
    shot(page, "fleet")
    # Filter by verdict: only the session that sent another value.
    page.click("#checks li[data-check='unknown'] a")
    assert page.locator("#sessions tbody tr").count() == 1
    assert re.search(r"sess-edited", page.locator("#sessions tbody").inner_text())
