"""Spend enforcement on a real Postgres: the 429 at a cap, usage headers, group/org caps,
period boundaries, /api/oauth/usage, and what happens while the database is down."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from support import live_gateway, token_for
from support.spend import request_info, set_limit, setup_gateway

from common import config
from common.core import periods
from common.core.errors import GatewayError
from common.core.usage import Usage
from common.db import pool as store
from common.proxy import metering
from common.spend import caps, queue, reserve

REJECT_HEADERS = {
    "retry-after",
    "x-should-retry",
    "anthropic-ratelimit-unified-status",
    "anthropic-ratelimit-unified-reset",
    "anthropic-ratelimit-unified-overage-reset",
    "anthropic-ratelimit-unified-overage-utilization",
    "anthropic-ratelimit-unified-overage-surpassed-threshold",
    "anthropic-ratelimit-unified-overage-period",
    "anthropic-ratelimit-unified-overage-disabled-reason",
}


def spend(info: Any, micros: int) -> None:
    """Run one request through metering that costs exactly `micros` (Haiku 4.5 input: 1 µ$ per token)."""
    cfg = config.current()
    ticket = metering.begin(cfg, info)
    metering.finish(cfg, ticket, Usage(input_tokens=micros), 200)


def refused(info: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        metering.begin(config.current(), info)
    return caught.value


@pytest.fixture
def gateway(tmp_path: Path, database_url: str) -> Path:
    return setup_gateway(tmp_path, database_url)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime]]:
    """Pin the ledger's clock; tests move it by assigning clock[0]."""
    clock = [datetime(2026, 3, 10, 21, 0, 0, tzinfo=UTC)]  # a Tuesday
    monkeypatch.setattr(reserve, "now", lambda: clock[0])
    yield clock


def test_user_at_the_cap_gets_the_exact_429(gateway: Path, frozen: list[datetime]) -> None:
    set_limit("user", "dev@example.com", "daily", "0.30")
    info = request_info(max_tokens=100)
    spend(info, 300_000)
    error = refused(info)
    assert error.status == 429 and error.error_type == "billing_error"
    assert set(error.headers) == REJECT_HEADERS
    reset = int(datetime(2026, 3, 11, tzinfo=UTC).timestamp())
    assert error.headers["retry-after"] == str(3 * 3600)
    assert error.headers["x-should-retry"] == "false"
    assert error.headers["anthropic-ratelimit-unified-status"] == "rejected"
    assert error.headers["anthropic-ratelimit-unified-reset"] == str(reset)
    assert error.headers["anthropic-ratelimit-unified-overage-reset"] == str(reset)
    assert error.headers["anthropic-ratelimit-unified-overage-utilization"] == "1"
    assert error.headers["anthropic-ratelimit-unified-overage-surpassed-threshold"] == "1"
    assert error.headers["anthropic-ratelimit-unified-overage-period"] == "daily"
    assert error.headers["anthropic-ratelimit-unified-overage-disabled-reason"] == "org_spend_cap_reached"
    assert "daily spend limit ($0.30)" in error.message
    assert "2026-03-11 00:00 UTC (in 3h 0m)" in error.message
    assert "administrator" in error.message
    # The caller's own cap: Claude Code 2.1.274+ hands this code to Claude Desktop.
    assert json.loads(error.body())["error"]["details"] == {"error_code": "spend_limit_reached"}
    # The refusal reserved nothing, and another user is unaffected.
    assert store.get().execute("SELECT count(*) FROM spend_holds")[0][0] == 0
    metering.begin(config.current(), request_info(email="other@example.com"))


def test_thresholds_produce_the_headers(gateway: Path, frozen: list[datetime]) -> None:
    set_limit("user", "dev@example.com", "monthly", "1.00")
    info = request_info(max_tokens=1, input_bytes=4)
    seen: list[dict[str, str]] = []
    for target in (500_000, 300_000, 160_000, 30_000):  # cumulative 0.50, 0.80, 0.96, 0.99
        ticket = metering.begin(config.current(), info)
        seen.append(ticket.headers)
        metering.finish(config.current(), ticket, Usage(input_tokens=target), 200)
    final = metering.begin(config.current(), info).headers
    first, at50, at80, at96 = seen[0], seen[1], seen[2], seen[3]
    reset = str(int(datetime(2026, 4, 1, tzinfo=UTC).timestamp()))
    assert first == {
        "anthropic-ratelimit-unified-status": "allowed",
        "anthropic-ratelimit-unified-representative-claim": "overage",
        "anthropic-ratelimit-unified-overage-status": "allowed",
        "anthropic-ratelimit-unified-overage-utilization": "0.00",
        "anthropic-ratelimit-unified-reset": reset,
        "anthropic-ratelimit-unified-overage-reset": reset,
    }
    assert at50["anthropic-ratelimit-unified-overage-utilization"] == "0.50"
    assert "anthropic-ratelimit-unified-overage-surpassed-threshold" not in at50
    assert at80["anthropic-ratelimit-unified-status"] == "allowed_warning"
    assert at80["anthropic-ratelimit-unified-overage-status"] == "allowed_warning"
    assert at80["anthropic-ratelimit-unified-overage-surpassed-threshold"] == "0.75"
    assert at80["anthropic-ratelimit-unified-overage-utilization"] == "0.80"
    assert at96["anthropic-ratelimit-unified-overage-surpassed-threshold"] == "0.95"
    assert final["anthropic-ratelimit-unified-overage-utilization"] == "0.99"


def test_uncapped_user_costs_no_round_trip_and_gets_no_headers(gateway: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_limit("user", "someone-else@example.com", "daily", "5")
    caps.cached_limits()  # warm the per-instance cache
    calls: list[str] = []
    original = store.Database.execute

    def counting(self: store.Database, sql: str, args: Any = ()) -> list[tuple[Any, ...]]:
        calls.append(sql)
        return original(self, sql, args)

    monkeypatch.setattr(store.Database, "execute", counting)
    ticket = metering.begin(config.current(), request_info())
    assert ticket.headers == {} and calls == []
    metering.finish(config.current(), ticket, Usage(input_tokens=10, output_tokens=10), 200)
    assert len(calls) == 1 and "spend_settle" in calls[0]
    assert store.get().execute("SELECT count(*) FROM spend_usage")[0][0] == 1


def test_count_tokens_is_free_and_costs_no_round_trip(gateway: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_limit("user", "dev@example.com", "daily", "0.01")
    caps.cached_limits()
    calls: list[str] = []
    original = store.Database.execute

    def counting(self: store.Database, sql: str, args: Any = ()) -> list[tuple[Any, ...]]:
        calls.append(sql)
        return original(self, sql, args)

    monkeypatch.setattr(store.Database, "execute", counting)
    info = request_info()
    info.endpoint = "count_tokens"
    ticket = metering.begin(config.current(), info)
    metering.finish(config.current(), ticket, Usage(input_tokens=5000), 200)
    assert ticket.headers == {} and calls == []


def test_group_caps_per_member_min_and_max(tmp_path: Path, database_url: str, frozen: list[datetime]) -> None:
    setup_gateway(tmp_path, database_url)
    set_limit("rbac_group", "eng", "daily", "0.10")
    set_limit("rbac_group", "ml", "daily", "0.50")
    member = request_info(email="a@example.com", groups=("Eng", "ml"), max_tokens=1, input_bytes=4)
    spend(member, 100_000)
    error = refused(member)  # min: the $0.10 cap of eng applies to a's own spend
    assert "per-member spend limit of group eng" in error.message
    assert "anthropic-ratelimit-unified-overage-scope" not in error.headers
    # Another member of eng has their own $0.10.
    metering.begin(config.current(), request_info(email="b@example.com", groups=("eng",)))
    # max mode: the larger group cap applies.
    path = setup_gateway(tmp_path, database_url, {"admin": {"group_limit_mode": "max"}})
    assert path.exists()
    metering.begin(config.current(), member)
    spend(member, 400_000)
    assert "group ml" in refused(member).message


def test_pooled_group_cap_blocks_every_member_with_group_pool_scope(gateway: Path, frozen: list[datetime]) -> None:
    set_limit("rbac_group", "eng", "weekly", "0.20", pooled=True)
    a = request_info(email="a@example.com", groups=("eng",), max_tokens=1, input_bytes=4)
    b = request_info(email="b@example.com", groups=("eng",), max_tokens=1, input_bytes=4)
    spend(a, 120_000)
    spend(b, 80_000)
    for who in (a, b):
        error = refused(who)
        assert error.headers["anthropic-ratelimit-unified-overage-scope"] == "group_pool"
        assert error.headers["anthropic-ratelimit-unified-overage-period"] == "weekly"
        assert set(error.headers) == REJECT_HEADERS | {"anthropic-ratelimit-unified-overage-scope"}
        assert "shared by group eng" in error.message
        assert "details" not in json.loads(error.body())["error"]  # not the caller's own cap
    metering.begin(config.current(), request_info(email="c@example.com", groups=("ml",)))


def test_org_cap_and_several_caps(gateway: Path, frozen: list[datetime]) -> None:
    set_limit("organization", "", "monthly", "1.00")
    set_limit("user", "a@example.com", "daily", "0.40")
    a = request_info(email="a@example.com", max_tokens=1, input_bytes=4)
    b = request_info(email="b@example.com", max_tokens=1, input_bytes=4)
    spend(a, 300_000)
    # a: daily 0.30/0.40 = 75 % is fuller than the org's 30 %: the headers describe the daily cap.
    headers = metering.begin(config.current(), a).headers
    assert headers["anthropic-ratelimit-unified-overage-utilization"] == "0.75"
    assert headers["anthropic-ratelimit-unified-reset"] == str(int(datetime(2026, 3, 11, tzinfo=UTC).timestamp()))
    store.get().execute("DELETE FROM spend_holds")  # the hold of the request above, never settled
    spend(b, 700_000)
    # The org's month is full; for a, so is the day: the 429 describes the one that resets last.
    error = refused(b)
    assert error.headers["anthropic-ratelimit-unified-overage-period"] == "monthly"
    assert "organization's monthly spend limit" in error.message
    error = refused(a)
    assert error.headers["anthropic-ratelimit-unified-overage-period"] == "monthly"


def test_period_boundaries(gateway: Path, frozen: list[datetime]) -> None:
    info = request_info(max_tokens=1, input_bytes=4)
    set_limit("user", "dev@example.com", "daily", "0.10")
    set_limit("user", "dev@example.com", "weekly", "0.25")
    set_limit("user", "dev@example.com", "monthly", "0.45")

    def at(*parts: int) -> None:
        frozen[0] = datetime(*parts, tzinfo=UTC)  # type: ignore[misc]

    def epoch(*parts: int) -> str:
        return str(int(datetime(*parts, tzinfo=UTC).timestamp()))  # type: ignore[misc]

    # UTC midnight: the day's cap is full at 23:59:59 and free at 00:00:00 (2028-02-29, the leap day).
    at(2028, 2, 28, 23, 59, 59)  # a Monday
    spend(info, 100_000)
    error = refused(info)
    assert (
        error.headers["retry-after"] == "1" and error.headers["anthropic-ratelimit-unified-overage-period"] == "daily"
    )
    at(2028, 2, 29, 0, 0, 0)
    spend(info, 100_000)
    at(2028, 2, 29, 23, 0, 0)
    assert refused(info).headers["anthropic-ratelimit-unified-reset"] == epoch(2028, 3, 1)
    # Month end: 1 March is a new day and month but the same week (Mon 28 Feb .. Sun 5 Mar).
    at(2028, 3, 1, 0, 0, 0)
    spend(info, 40_000)
    headers = metering.begin(config.current(), info).headers
    assert headers["anthropic-ratelimit-unified-overage-utilization"] == "0.96"  # the week: 240k of 250k
    assert headers["anthropic-ratelimit-unified-reset"] == epoch(2028, 3, 6)
    store.get().execute("DELETE FROM spend_holds")
    spend(info, 10_000)
    error = refused(info)
    assert error.headers["anthropic-ratelimit-unified-overage-period"] == "weekly"
    assert error.headers["anthropic-ratelimit-unified-reset"] == epoch(2028, 3, 6)
    # Monday: the week resets.
    at(2028, 3, 6, 0, 0, 0)
    assert metering.begin(config.current(), info).headers["anthropic-ratelimit-unified-status"] == "allowed"

    # Month end and year end for a monthly cap.
    monthly = request_info(email="m@example.com", max_tokens=1, input_bytes=4)
    set_limit("user", "m@example.com", "monthly", "0.10")
    at(2027, 1, 31, 23, 0, 0)
    spend(monthly, 100_000)
    assert refused(monthly).headers["anthropic-ratelimit-unified-reset"] == epoch(2027, 2, 1)
    at(2027, 2, 1, 0, 0, 0)
    spend(monthly, 100_000)
    at(2027, 2, 28, 23, 59, 0)
    assert refused(monthly).headers["retry-after"] == "60"
    at(2028, 12, 31, 23, 0, 0)
    spend(monthly, 100_000)
    error = refused(monthly)
    assert error.headers["anthropic-ratelimit-unified-reset"] == epoch(2029, 1, 1)
    assert error.headers["retry-after"] == "3600"
    at(2029, 1, 1, 0, 0, 0)
    assert metering.begin(config.current(), monthly).headers["anthropic-ratelimit-unified-status"] == "allowed"

    days = store.get().execute(
        "SELECT day::text, sum(spent_micros) FROM spend_counters WHERE scope_key = 'user:dev@example.com'"
        " GROUP BY day ORDER BY day"
    )
    assert days == [("2028-02-28", 100_000), ("2028-02-29", 100_000), ("2028-03-01", 50_000)]


def test_usage_endpoint_shape(gateway: Path, tmp_path: Path) -> None:
    """As the protocol text of Claude Code 2.1.333 describes it, and as its parser reads it."""
    set_limit("user", "capped@example.com", "monthly", "20.00")
    set_limit("user", "capped@example.com", "daily", "4.00")
    spend(request_info(email="capped@example.com", max_tokens=1, input_bytes=4), 1_000_000)
    spend(request_info(email="free@example.com", max_tokens=1, input_bytes=4), 2_500_000)
    capped = token_for(gateway, "capped@example.com")
    free = token_for(gateway, "free@example.com")
    today = datetime.now(UTC).date()
    with live_gateway(gateway) as live:
        reply = requests.get(f"{live.url}/api/oauth/usage", headers={"Authorization": f"Bearer {capped}"}, timeout=10)
        assert reply.status_code == 200, reply.text
        assert reply.headers["cache-control"] == "no-store"
        data = reply.json()
        # The daily cap is the fullest (25 % against 5 %): it is the one the headers describe,
        # so its dollars are in extra_usage although the field is called monthly_limit.
        assert data["extra_usage"] == {
            "is_enabled": True,
            "monthly_limit": 400,
            "used_credits": 100,
            "utilization": 25,
            "currency": "USD",
        }
        rows = {item["group"]: item for item in data["limits"]}
        assert set(rows) == {"daily", "monthly"} and len(data["limits"]) == 2
        assert rows["daily"] == {
            "kind": "spend",
            "group": "daily",
            "percent": 25,
            "resets_at": periods.reset_at("daily", today).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "severity": "normal",
            "is_active": True,
        }
        assert rows["monthly"]["is_active"] is False and rows["monthly"]["percent"] == 5
        # resets_at is the same instant as the header the messages endpoint sends, to the second.
        headers = metering.begin(config.current(), request_info(email="capped@example.com", max_tokens=1)).headers
        reset = datetime.fromisoformat(rows["daily"]["resets_at"].replace("Z", "+00:00"))
        assert int(reset.timestamp()) == int(headers["anthropic-ratelimit-unified-overage-reset"])

        data = requests.get(
            f"{live.url}/api/oauth/usage", headers={"Authorization": f"Bearer {free}"}, timeout=10
        ).json()
        assert data == {
            "extra_usage": {
                "is_enabled": True,
                "monthly_limit": None,
                "used_credits": 250,
                "utilization": None,
                "currency": "USD",
                "daily": {"limit": None, "used_credits": 250, "utilization": None},
                "weekly": {"limit": None, "used_credits": 250, "utilization": None},
            },
            "limits": [],
        }
        anonymous = requests.get(f"{live.url}/api/oauth/usage", timeout=10)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"


def test_usage_severity_follows_the_thresholds(gateway: Path) -> None:
    from common.core.identity import Identity
    from common.spend import usage_report

    set_limit("user", "dev@example.com", "weekly", "1.00")
    who = Identity(sub="dev@example.com", email="dev@example.com", groups=())
    seen = []
    for micros in (740_000, 20_000, 200_000, 50_000):  # cumulative 74, 76, 96, 101 %
        spend(request_info(max_tokens=1, input_bytes=4), micros)
        row = usage_report.standing(who)["limits"][0]
        seen.append((row["percent"], row["severity"]))
    assert seen == [(74, "normal"), (76, "warning"), (96, "critical"), (101, "critical")]  # above 100 once over


# --- the database stopped: a dedicated server this test can stop and start ---------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Any]:
    from gateway import devdb

    server = devdb.start()  # its own temp dir: pytest resets tmp_path's root to 0700, out of postgres's reach
    try:
        yield server
    finally:
        devdb.remove(server)


def _wait_until(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_fail_closed_and_fail_open_with_the_database_stopped(tmp_path: Path, own_server: Any) -> None:
    url = own_server.create_database("spend")
    setup_gateway(tmp_path, url, {"enforcement": {"fail_closed_on_error": True}})
    set_limit("user", "dev@example.com", "daily", "5.00")
    info = request_info(max_tokens=1, input_bytes=4)
    spend(info, 200_000)
    own_server.stop()
    try:
        error = refused(info)
        assert error.status == 429 and error.error_type == "billing_error"
        assert error.headers["x-should-retry"] == "false"
        assert error.headers["anthropic-ratelimit-unified-overage-disabled-reason"] == "fetch_error"
        assert "unavailable" in error.message
        assert "details" not in json.loads(error.body())["error"]  # the cap is not known to be reached
        # Who is capped comes from the last good read of the limits: an uncapped user still gets through.
        caps.LIMITS.expire()  # the next request tries (and fails) to re-read
        assert metering.begin(config.current(), request_info(email="free@example.com")).headers == {}

        # Fail open: the request goes through (no headers); its usage is queued, not lost.
        setup_path = tmp_path / "open"
        setup_path.mkdir()
        from support import activate, base_config, deep_merge, write_config

        activate(
            write_config(setup_path, deep_merge(base_config(url), {"enforcement": {"fail_closed_on_error": False}}))
        )
        ticket = metering.begin(config.current(), info)
        assert ticket.headers == {}
        for _ in range(3):
            metering.finish(config.current(), ticket, Usage(input_tokens=150_000), 200)
            ticket = metering.begin(config.current(), info)
        assert queue.pending() == 3
    finally:
        own_server.start()
    # The background retry (or the next settle) writes the queue once the database is back.
    assert _wait_until(lambda: queue.pending() == 0), "queued settles were not written"
    rows = store.get().execute("SELECT count(*), sum(cost_micros) FROM spend_usage")
    assert rows[0][0] == 4  # the request before the outage and the three queued during it
    spent = store.get().execute("SELECT sum(spent_micros) FROM spend_counters WHERE scope_key = 'user:dev@example.com'")
    assert spent[0][0] == 200_000 + 3 * 150_000
