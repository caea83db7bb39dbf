"""50 concurrent requests from one user whose cap allows about 10.

Each request goes through the real metering interface the proxy uses
(`metering.begin` before the upstream, `metering.finish` after it) on a real
Postgres, from 50 threads at once, with a random "stream" time in between.
Checks: the overshoot stays within the bound of docs/spend.md, and the ledger
holds exactly the sum of the reported usage priced to the micro-dollar.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from spend_helpers import request_info, set_limit, setup_gateway

from common import config, ledger, metering, pricing, store
from common.errors import GatewayError
from common.metering import Usage

N = 50
MAX_TOKENS = 2000
INPUT_BYTES = 4000


def test_fifty_concurrent_requests_stay_within_the_bound(tmp_path: Path, database_url: str) -> None:
    setup_gateway(tmp_path, database_url, {"store": {"max_connections": 10}})
    cfg = config.current()
    info0 = request_info(max_tokens=MAX_TOKENS, input_bytes=INPUT_BYTES)
    estimate = ledger.estimate_micros(cfg, info0)  # 1000 input + 2000 output tokens of Haiku 4.5
    assert estimate == 1000 * 1 + 2000 * 5
    cap = 10 * estimate  # room for ten reservations
    set_limit("user", "dev@example.com", "daily", str(cap / 1_000_000))
    book = pricing.build(cfg.pricing)
    rng = random.Random(5)
    plans = []
    for i in range(N):
        # Most requests use less than reserved; every fifth writes a cache and costs more than its estimate.
        usage = Usage(input_tokens=rng.randint(500, 1000), output_tokens=rng.randint(100, MAX_TOKENS))
        if i % 5 == 0:
            usage.cache_creation_5m_input_tokens = 4000
        plans.append(usage)
    barrier = threading.Barrier(N)
    outcomes: list[tuple[str, Usage]] = []
    lock = threading.Lock()

    def one(usage: Usage) -> None:
        info = request_info(max_tokens=MAX_TOKENS, input_bytes=INPUT_BYTES)
        barrier.wait()
        try:
            ticket = metering.begin(cfg, info)
        except GatewayError as exc:
            assert exc.status == 429 and exc.error_type == "billing_error"
            with lock:
                outcomes.append(("refused", usage))
            return
        time.sleep(rng.uniform(0.01, 0.08))  # the upstream streams
        metering.finish(cfg, ticket, usage, 200)
        with lock:
            outcomes.append(("ok", usage))

    threads = [threading.Thread(target=one, args=(u,)) for u in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(outcomes) == N
    admitted = [u for kind, u in outcomes if kind == "ok"]
    assert 5 <= len(admitted) < N, f"{len(admitted)} admitted"

    expected_total = sum(book.cost_micros("claude-haiku-4-5", u) for u in admitted)
    ledger_total, rows = store.get().execute("SELECT coalesce(sum(cost_micros), 0), count(*) FROM spend_usage")[0]
    counter_total = store.get().execute(
        "SELECT sum(spent_micros) FROM spend_counters WHERE scope_key = 'user:dev@example.com'"
    )[0][0]
    assert rows == len(admitted)
    assert ledger_total == expected_total == counter_total  # exact, to the micro-dollar
    # docs/spend.md: spend <= cap + one estimate + what admitted requests used beyond their reservation.
    excess = sum(max(0, book.cost_micros("claude-haiku-4-5", u) - estimate) for u in admitted)
    bound = cap + estimate + excess
    assert ledger_total <= bound, (ledger_total, bound)
    assert store.get().execute("SELECT count(*) FROM spend_holds")[0][0] == 0
    print(f"admitted {len(admitted)}/{N}; spent {ledger_total} µ$ of cap {cap} (bound {bound})")


def test_without_the_lock_the_cap_would_be_overrun(tmp_path: Path, database_url: str) -> None:
    """The same burst with the user's key unlocked (as the org key is) admits more: the lock matters."""
    setup_gateway(tmp_path, database_url, {"store": {"max_connections": 10}})
    cfg = config.current()
    estimate = ledger.estimate_micros(cfg, request_info(max_tokens=MAX_TOKENS, input_bytes=INPUT_BYTES))
    set_limit("user", "dev@example.com", "daily", str(2 * estimate / 1_000_000))

    def burst() -> int:
        store.get().execute("DELETE FROM spend_holds")
        barrier = threading.Barrier(20)
        admitted: list[int] = []

        def one() -> None:
            barrier.wait()
            try:
                metering.begin(cfg, request_info(max_tokens=MAX_TOKENS, input_bytes=INPUT_BYTES))
                admitted.append(1)
            except GatewayError:
                pass

        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        return len(admitted)

    assert burst() == 2  # locked: exactly the two reservations that fit
    original = ledger.UNLOCKED_KEYS
    ledger.UNLOCKED_KEYS = frozenset({ledger.ORG_KEY, "user:dev@example.com"})
    try:
        unlocked = max(burst() for _ in range(3))
    finally:
        ledger.UNLOCKED_KEYS = original
    assert unlocked > 2, "an optimistic check should admit concurrent reservations past the cap"
