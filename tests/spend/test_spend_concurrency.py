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

from support.spend import request_info, set_limit, setup_gateway

from common import config
from common.core.errors import GatewayError
from common.core.usage import Usage
from common.db import pool as store
from common.proxy import metering
from common.spend import pricing, reserve

N = 50
MAX_TOKENS = 2000
INPUT_BYTES = 4000


def test_fifty_concurrent_requests_stay_within_the_bound(tmp_path: Path, database_url: str) -> None:
    setup_gateway(tmp_path, database_url, {"store": {"max_connections": 10}})
    cfg = config.current()
    info0 = request_info(max_tokens=MAX_TOKENS, input_bytes=INPUT_BYTES)
    estimate = reserve.estimate_micros(cfg, info0)  # 1000 input + 2000 output tokens of Haiku 4.5
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


def _reserve_sql(cursor: object, key: str, cap: int, lock: bool) -> bool:
    import uuid
    from datetime import UTC, datetime

    today = datetime.now(UTC).date()
    cursor.execute(  # type: ignore[attr-defined]
        "SELECT bool_and(admitted) FROM spend_reserve(%s::uuid, %s::text[], %s::date[], %s::bigint[], %s::date,"
        " %s::bigint, %s::integer, %s::text[])",
        (str(uuid.uuid4()), [key], [today], [cap], today, 600, 60, [key] if lock else []),
    )
    return bool(cursor.fetchall()[0][0])  # type: ignore[attr-defined]


def test_the_lock_serialises_reservations_and_the_late_one_sees_the_first(database_url: str, tmp_path: Path) -> None:
    """Two reserves racing on one key whose cap is one estimate, with A's transaction held open.

    Locked: B waits for A's commit and then (fresh snapshot inside the function) sees A's hold: refused.
    Unlocked (how the org key works): B does not see A's uncommitted hold and is admitted too.
    """
    import pg8000.dbapi

    from common.db.pool import parse_url

    setup_gateway(tmp_path, database_url)
    connect = parse_url(database_url)
    for lock, b_expected in ((True, False), (False, True)):
        key = f"user:race-{lock}@example.com"
        a = pg8000.dbapi.connect(**connect)
        b = pg8000.dbapi.connect(**connect)
        b.autocommit = True
        try:
            a_cursor = a.cursor()
            assert _reserve_sql(a_cursor, key, 600, lock)  # A holds 600 of 600, not yet committed
            result: list[bool] = []

            def race(out: list[bool] = result, conn: object = b, k: str = key, locked: bool = lock) -> None:
                out.append(_reserve_sql(conn.cursor(), k, 600, locked))  # type: ignore[attr-defined]

            racer = threading.Thread(target=race)
            racer.start()
            racer.join(timeout=1.0)
            assert racer.is_alive() is lock  # locked: B is waiting for A
            a.commit()
            racer.join(timeout=10)
            assert result == [b_expected]
        finally:
            a.close()
            b.close()
