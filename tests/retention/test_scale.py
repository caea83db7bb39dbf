"""Measurement on a synthetic history (docs/operations.md): the 31-day cost report, reserve and settle
latency against an empty database, one retention sweep, and the database's size.

Slow: run it on purpose, sized by RETENTION_SCALE="users,days,per_day" (default 1000,420,20: 420 days so
the first sweep has a month past the 13-month retention to delete). Prints every figure; asserts the
report's budget (200 ms, twice that on the shared 2-core test machine) and the latency bound loosely.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import activate, base_config, write_config
from support.spend import settle_row

from common import config
from common.admin import retention
from common.core import periods
from common.db import pool
from common.spend import store
from gateway import seed


def _median_ms(fn: object, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def _ledger_latency(db: pool.Database, n: int = 300) -> tuple[tuple[float, float], tuple[float, float]]:
    today = periods.today()
    email = "dev5@example.com"
    keys = ["group:eng", "org", "user:" + email]
    starts = [periods.start("monthly", today)] * 3

    def reserve() -> None:
        store.reserve(db, str(uuid.uuid4()), keys, starts, [10**15] * 3, today, 1000, 60, keys[:1])

    def settle() -> None:
        row = settle_row(
            email,
            datetime.now(UTC),
            7,
            request_id="m",
            groups=("eng", "team5"),
            input_tokens=1,
            output_tokens=1,
            cache_read_tokens=0,
            cache_write_5m_tokens=0,
            cache_write_1h_tokens=0,
            counters=(("group:eng", 1), ("org", 2), ("user:" + email, 0)),
        )
        store.settle_batch(db, [row])

    for _ in range(30):  # warm the plans and the pool
        reserve()
        settle()
    return _median_ms(reserve, n), _median_ms(settle, n)


@pytest.mark.slow
def test_scale(tmp_path: Path, database_url: str) -> None:
    users, days, per_day = (int(v) for v in os.environ.get("RETENTION_SCALE", "1000,420,20").split(","))
    activate(write_config(tmp_path, base_config(database_url)))
    db = pool.get()
    empty_reserve, empty_settle = _ledger_latency(db)
    store.delete_usage(db)
    t0 = time.perf_counter()
    assert seed.main(users=users, days=days, per_day=per_day, audit_per_day=8000, append=False) == 0
    seeded_s = time.perf_counter() - t0
    rows = int(db.execute("SELECT count(*) FROM spend_usage")[0][0])
    today = periods.today()
    start, end = today - timedelta(days=30), today + timedelta(days=1)
    by_user = _median_ms(lambda: store.cost_report(db, start, end, ["user"], limit=10_001), 7)
    by_group = _median_ms(lambda: store.cost_report(db, start, end, ["group"], limit=10_001), 7)
    by_group_user = _median_ms(lambda: store.cost_report(db, start, end, ["group", "user"], limit=10_001), 7)
    full_reserve, full_settle = _ledger_latency(db)
    size = lambda: int(db.execute("SELECT pg_database_size(current_database())")[0][0])  # noqa: E731
    before_sweep = size()
    tables = db.execute(
        "SELECT relname, pg_total_relation_size(oid), reltuples::bigint FROM pg_class"
        " WHERE relname IN ('spend_usage', 'spend_daily', 'spend_counters', 'audit_log') ORDER BY 1"
    )
    t0 = time.perf_counter()
    outcome = retention.sweep(config.current())
    sweep_s = time.perf_counter() - t0
    print(
        f"\nSCALE users={users} days={days} per_day={per_day}: {rows:,} usage rows seeded in {seeded_s:.0f} s\n"
        f"cost report 31 days (median, p95 ms): by user {by_user}, by group {by_group}, by group+user {by_group_user}\n"
        f"reserve empty {empty_reserve} full {full_reserve}; settle empty {empty_settle} full {full_settle}\n"
        f"sweep {sweep_s:.1f} s complete={outcome.complete} deleted={outcome.deleted}\n"
        f"database {before_sweep / 2**20:.0f} MiB before the sweep; tables {[(n, s // 2**20, t) for n, s, t in tables]}"
    )
    assert by_user[0] < 400 and by_group[0] < 400
    assert outcome.complete and (days <= 400 or outcome.deleted["spend_usage"] > 0)
