"""Spend caps on the live path: Claude Code's requests over HTTP through the one-origin gateway
to the upstream stand-in (Vertex wire format), with caps set through the admin API."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import ADMIN_WRITE_KEY, LiveServer, base_config, live_gateway, token_for
from support.spend import release_leases, setup_gateway
from test_spend_enforcement import REJECT_HEADERS  # the exact 429 header set of PROTOCOL.md

from common.core.usage import Usage
from common.db import pool as store
from common.spend import pricing, queue


@pytest.fixture
def live(tmp_path: Path, database_url: str, standin: Any) -> Iterator[tuple[LiveServer, Path]]:
    standin.reset()
    standin.configure(record=True)
    path = setup_gateway(
        tmp_path,
        database_url,
        {
            "upstreams": base_config(database_url, upstream_url=standin.base_url)["upstreams"],
            "store": {"max_connections": 12},
        },
    )
    with live_gateway(path) as server:
        yield server, path


def set_cap(live: LiveServer, email: str, period: str, cents: str) -> None:
    response = requests.post(
        f"{live.url}/v1/organizations/spend_limits",
        json={"scope": {"type": "user", "user_id": email}, "period": period, "amount": cents},
        headers={"x-api-key": ADMIN_WRITE_KEY},
        timeout=10,
    )
    assert response.status_code in (200, 201), response.text


def message(
    token: str, live: LiveServer, usage: dict[str, int], max_tokens: int = 2000, stream: bool = True
) -> requests.Response:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": max_tokens,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
        "_standin": {"deltas": 3, "gap_ms": 15, **usage},
    }
    response = requests.post(
        f"{live.url}/v1/messages",
        data=json.dumps(body),
        headers={
            "Authorization": f"Bearer {token}",
            "content-type": "application/json",
            "anthropic-version": "2023-06-01",
        },
        stream=stream,
        timeout=60,
    )
    if stream:
        response._content = b"".join(response.iter_content(None))  # read the stream to its end
    return response


def wait_rows(count: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    rows = 0
    while time.monotonic() < deadline:
        rows = int(store.get().execute("SELECT count(*) FROM spend_usage WHERE endpoint = 'messages'")[0][0])
        if rows >= count:
            break
        time.sleep(0.05)
    return rows


def test_headers_then_the_exact_429_before_proxying(live: tuple[LiveServer, Path], standin: Any) -> None:
    server, path = live
    set_cap(server, "dev@example.com", "daily", "5")  # $0.05 = 50,000 µ$
    dev = token_for(path, "dev@example.com")
    first = message(dev, server, {"input_tokens": 1000, "output_tokens": 2000})  # 1,000 + 10,000 µ$
    assert first.status_code == 200, first.text
    assert first.headers["anthropic-ratelimit-unified-status"] == "allowed"
    assert first.headers["anthropic-ratelimit-unified-representative-claim"] == "overage"
    assert first.headers["anthropic-ratelimit-unified-overage-utilization"] == "0.00"
    second = message(dev, server, {"input_tokens": 30_000, "output_tokens": 100})  # now 41,500 µ$: 83 %
    assert second.status_code == 200
    assert second.headers["anthropic-ratelimit-unified-overage-utilization"] == "0.22"
    third = message(dev, server, {"input_tokens": 10_000, "output_tokens": 100}, stream=False)
    assert third.headers["anthropic-ratelimit-unified-status"] == "allowed_warning"
    assert third.headers["anthropic-ratelimit-unified-overage-surpassed-threshold"] == "0.75"
    assert wait_rows(3) == 3
    sent = len(standin.requests)
    refused = message(dev, server, {"input_tokens": 1, "output_tokens": 1})
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "billing_error"
    assert "daily spend limit ($0.05)" in refused.json()["error"]["message"]
    unified = {
        k.lower()
        for k in refused.headers
        if k.lower().startswith("anthropic-ratelimit-") or k.lower() in ("retry-after", "x-should-retry")
    }
    assert unified == REJECT_HEADERS
    assert refused.headers["anthropic-ratelimit-unified-overage-disabled-reason"] == "org_spend_cap_reached"
    assert len(standin.requests) == sent  # refused before proxying
    # A user without a cap gets no unified headers at all.
    free = message(token_for(path, "free@example.com"), server, {"input_tokens": 10, "output_tokens": 10})
    assert free.status_code == 200
    assert not [k for k in free.headers if k.lower().startswith("anthropic-ratelimit-")]


@pytest.mark.slow
def test_fifty_concurrent_streams_from_one_user(live: tuple[LiveServer, Path], standin: Any) -> None:
    server, path = live
    set_cap(server, "dev@example.com", "daily", "10")  # $0.10: about ten reservations of ~10,000 µ$
    dev = token_for(path, "dev@example.com")
    rng = random.Random(11)
    plans = [
        {
            "input_tokens": rng.randint(200, 1500),
            "output_tokens": rng.randint(50, 2000),
            "cache_read_input_tokens": rng.randint(0, 3000),
            "cache_creation_5m_input_tokens": rng.choice([0, 0, 500]),
        }
        for _ in range(50)
    ]
    barrier = threading.Barrier(50)
    results: list[tuple[int, dict[str, int]]] = []
    lock = threading.Lock()

    def one(plan: dict[str, int]) -> None:
        barrier.wait()
        response = message(dev, server, plan)
        with lock:
            results.append((response.status_code, plan))

    threads = [threading.Thread(target=one, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    statuses = sorted(s for s, _ in results)
    admitted = [p for s, p in results if s == 200]
    assert set(statuses) <= {200, 429} and len(results) == 50
    assert 5 <= len(admitted) < 50, statuses
    assert wait_rows(len(admitted)) == len(admitted)

    book = pricing.build(None)
    costs = [book.cost_micros("claude-haiku-4-5", Usage(**p)) for p in admitted]
    total = int(store.get().execute("SELECT sum(cost_micros) FROM spend_usage")[0][0])
    assert total == sum(costs)  # the upstream's reported usage priced exactly, to the micro-dollar
    stats = standin.stats()
    assert int(store.get().execute("SELECT sum(output_tokens) FROM spend_usage")[0][0]) == sum(
        p["output_tokens"] for p in admitted
    ), stats
    # The bound of docs/spend.md: cap + the last estimate + what requests cost beyond their reservation.
    min_estimate = 2000 * 5  # max_tokens at Haiku 4.5's output price; the input estimate only adds
    max_estimate = min_estimate + 2000  # the request body (< 8 kB) / 4 at $1/MTok
    cap = 100_000
    excess = sum(max(0, c - min_estimate) for c in costs)
    assert total <= cap + max_estimate + excess, (total, cap, excess)
    release_leases()  # a lease outlives its requests; released, nothing is held
    assert store.get().execute("SELECT count(*) FROM spend_holds")[0][0] == 0
    print(f"HTTP: admitted {len(admitted)}/50, spent {total} µ$ of cap {cap}")
    assert queue.pending() == 0
