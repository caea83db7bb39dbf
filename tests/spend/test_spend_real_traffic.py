"""Spend caps under what Claude Code really sends: its captured request, several in flight at once.

The body is the one the pinned CLI sent for `claude -p` (captured at test time by
`gateway.capture`, never committed): ~88 KB, 12 tools, thinking, `max_tokens` at
the model's ceiling. The upstream stand-in answers with usage typical of Claude
Code after the first turn: the prompt almost all cache reads, a few hundred
output tokens. Caps hold an *expected* cost (docs/spend.md), so a developer far
from the cap is never refused, and a burst against little headroom stays within
the bound.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import LiveServer, base_config, live_gateway, token_for
from support.capture import real_request
from support.spend import release_leases, request_info, set_limit, setup_gateway

from common import config
from common.core import catalog, models
from common.core.usage import Usage
from common.db import pool as store
from common.proxy import metering
from common.spend import pricing

pytestmark = pytest.mark.e2e  # the body comes from the real CLI

USER = "dev@example.com"


def typical_usage(body: dict[str, Any]) -> dict[str, int]:
    """Usage of a later turn: a handful of fresh tokens, the rest of the prompt read from the cache."""
    prompt = len(json.dumps(body).encode()) // 4
    return {
        "input_tokens": 6,
        "cache_read_input_tokens": prompt - 326,
        "cache_creation_5m_input_tokens": 320,
        "output_tokens": 380,
    }


def as_usage(figures: dict[str, int]) -> Usage:
    return Usage(
        input_tokens=figures["input_tokens"],
        output_tokens=figures["output_tokens"],
        cache_read_input_tokens=figures["cache_read_input_tokens"],
        cache_creation_5m_input_tokens=figures["cache_creation_5m_input_tokens"],
    )


@pytest.fixture
def live(tmp_path: Path, database_url: str, standin: Any) -> Iterator[tuple[LiveServer, Path]]:
    standin.reset()
    path = setup_gateway(
        tmp_path,
        database_url,
        {
            "upstreams": base_config(database_url, upstream_url=standin.base_url)["upstreams"],
            "store": {"max_connections": 20},
        },
    )
    with live_gateway(path) as server:
        yield server, path


def real_body(model: str) -> tuple[dict[str, Any], dict[str, int]]:
    body = real_request()
    body["model"] = model
    body["max_tokens"] = catalog.BY_ID[models.canonical(model)].max_output_tokens  # the model's ceiling
    usage = typical_usage(body)
    body["_standin"] = {"deltas": 8, "gap_ms": 3, **usage}
    return body, usage


def burst(live: LiveServer, token: str, body: dict[str, Any], n: int) -> list[requests.Response]:
    data = json.dumps(body)
    barrier = threading.Barrier(n)
    out: list[requests.Response] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        reply = requests.post(
            f"{live.url}/v1/messages",
            data=data,
            headers={
                "Authorization": f"Bearer {token}",
                "content-type": "application/json",
                "anthropic-version": "2023-06-01",
            },
            timeout=120,
        )
        with lock:
            out.append(reply)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert len(out) == n
    return out


def ledger_micros(email: str) -> tuple[int, int]:
    rows = store.get().execute(
        "SELECT count(*), coalesce(sum(cost_micros), 0) FROM spend_usage WHERE user_email = %s", (email,)
    )
    return int(rows[0][0]), int(rows[0][1])


@pytest.mark.parametrize("model", ["claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5"])
def test_sixteen_at_once_below_half_the_cap_are_all_served(live: tuple[LiveServer, Path], model: str) -> None:
    server, path = live
    body, usage = real_body(model)
    set_limit("user", USER, "daily", "10.00")
    cfg = config.current()
    # $4.90 already spent today (49 % of the cap).
    before = metering.begin(cfg, request_info(email=USER, max_tokens=1, input_bytes=4))
    metering.finish(cfg, before, Usage(input_tokens=4_900_000), 200)  # Haiku 4.5 input: $1 per million
    assert ledger_micros(USER) == (1, 4_900_000)

    replies = burst(server, token_for(path, USER), body, 16)
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] * 16, [r.text[:300] for r in replies if r.status_code != 200]
    # 49 % spent plus 16 expected costs in flight may pass the 75 % notice, never the cap.
    assert {r.headers.get("anthropic-ratelimit-unified-status") for r in replies} <= {"allowed", "allowed_warning"}
    # The ledger is the upstream's usage priced at list, to the micro-dollar.
    cost = pricing.book(cfg).cost_micros(model, as_usage(usage))
    assert ledger_micros(USER) == (17, 4_900_000 + 16 * cost)
    release_leases()  # a lease outlives its requests; released, nothing is held
    assert store.get().execute("SELECT count(*) FROM spend_holds")[0][0] == 0


def test_fifty_at_once_against_nine_requests_of_headroom(live: tuple[LiveServer, Path]) -> None:
    server, path = live
    model = "claude-opus-4-7"
    body, usage = real_body(model)
    cfg = config.current()
    cost = pricing.book(cfg).cost_micros(model, as_usage(usage))
    # Earlier traffic of the organisation (another, uncapped developer) taught the gateway what
    # this model's requests cost; a fresh instance would first read the same from the ledger.
    warm = burst(server, token_for(path, "colleague@example.com"), body, 1)
    for _ in range(9):
        warm += burst(server, token_for(path, "colleague@example.com"), body, 1)
    assert [r.status_code for r in warm] == [200] * 10
    cap = int(cost * 9.4)  # room for nine requests, not ten
    set_limit("user", USER, "daily", f"{cap / 1_000_000:.6f}")

    replies = burst(server, token_for(path, USER), body, 50)
    served = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code != 200]
    assert all(r.status_code == 429 and r.json()["error"]["type"] == "billing_error" for r in refused)
    assert all(r.json()["error"]["details"] == {"error_code": "spend_limit_reached"} for r in refused)
    count, spent = ledger_micros(USER)
    assert count == len(served) and spent == len(served) * cost  # exact, to the micro-dollar
    assert spent <= 1.25 * cap, (spent, cap)
    assert len(served) >= 8, f"only {len(served)} of the 9 requests the cap holds were served"
    print(f"served {len(served)}/50; spent {spent} µ$ of a {cap} µ$ cap ({spent / cap:.2f}×)")
