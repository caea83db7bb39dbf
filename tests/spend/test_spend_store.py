"""The spend store on a real Postgres: a SettleRow lands field for field (alone and in a batch),
a reserve holds and a settle drops the hold; and no module but `spend.store` has spend SQL."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from support.spend import setup_gateway

import common.spend
from common.db import pool
from common.spend import store
from common.spend.store import SettleRow

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 3, 10)


def _row(email: str, cost: int, status: int) -> SettleRow:
    return SettleRow(
        reservation_key=str(uuid.uuid4()),
        request_id=f"req_{email}",
        at=datetime(2026, 3, 10, 21, 0, 0, tzinfo=UTC),
        day=DAY,
        user_email=email,
        user_sub=f"sub-{email}",
        groups=("eng", "ml"),
        model="claude-haiku-4-5",
        upstream="vertex",
        upstream_model="claude-haiku-4-5@20251001",
        billing_group="team-a",
        endpoint="messages",
        status=status,
        input_tokens=11,
        output_tokens=12,
        cache_read_tokens=13,
        cache_write_5m_tokens=14,
        cache_write_1h_tokens=15,
        cost_micros=cost,
        counters=(("group:eng", 3), ("org", 5), ("user:" + email, 0)),
        sweep=False,
    )


def test_a_settle_row_lands_field_for_field_alone_and_in_a_batch(tmp_path: Path, database_url: str) -> None:
    setup_gateway(tmp_path, database_url)
    db = pool.get()
    alone, first, second = _row("a@example.com", 1000, 200), _row("b@example.com", 2000, 201), _row("c@x.io", 4, 529)
    store.settle(db, alone)
    store.settle_batch(db, [first, second])
    written = db.execute(
        "SELECT request_key::text, request_id, at, day, user_email, user_sub, groups, model, upstream, upstream_model,"
        " billing_group, endpoint, status, input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,"
        " cache_write_1h_tokens, cost_micros FROM spend_usage ORDER BY user_email"
    )
    expected = [
        (
            r.reservation_key, r.request_id, r.at, r.day, r.user_email, r.user_sub, list(r.groups), r.model,
            r.upstream, r.upstream_model, r.billing_group, r.endpoint, r.status, r.input_tokens, r.output_tokens,
            r.cache_read_tokens, r.cache_write_5m_tokens, r.cache_write_1h_tokens, r.cost_micros,
        )
        for r in (alone, first, second)
    ]  # fmt: skip
    assert [tuple(w) for w in written] == expected
    counters = db.execute("SELECT scope_key, shard, spent_micros FROM spend_counters ORDER BY scope_key, shard")
    assert [tuple(c) for c in counters] == [
        ("group:eng", 3, 3004),
        ("org", 5, 3004),
        ("user:a@example.com", 0, 1000),
        ("user:b@example.com", 0, 2000),
        ("user:c@x.io", 0, 4),
    ]
    assert store.usage_totals(db, "b@example.com") == store.UsageTotals(1, 11, 12, 2000)


def test_reserve_holds_until_the_settle_and_period_spend_sees_both(tmp_path: Path, database_url: str) -> None:
    setup_gateway(tmp_path, database_url)
    db = pool.get()
    settled = _row("a@example.com", 300, 200)
    keys = ["user:a@example.com", "org"]
    figures, admitted, _ = store.reserve(
        db, settled.reservation_key, keys, [DAY, DAY], [1000, 1000], DAY, 600, 60, keys[:1]
    )
    assert admitted and figures == [(0, 0), (0, 0)]
    assert store.period_spend(db, keys, [DAY, DAY], DAY) == [(0, 600), (0, 600)]
    # Admitted while what is used is below the cap (the overshoot bound of docs/spend.md) ...
    figures, admitted, _ = store.reserve(db, str(uuid.uuid4()), keys, [DAY, DAY], [1000, 1000], DAY, 600, 60, keys[:1])
    assert figures == [(0, 600), (0, 600)] and admitted
    assert store.period_spend(db, keys, [DAY, DAY], DAY) == [(0, 1200), (0, 1200)]
    # ... and refused at it, holding nothing.
    _, admitted, _ = store.reserve(db, str(uuid.uuid4()), keys, [DAY, DAY], [1000, 1000], DAY, 600, 60, keys[:1])
    assert not admitted
    assert store.period_spend(db, keys, [DAY, DAY], DAY) == [(0, 1200), (0, 1200)]
    store.settle(db, settled)
    assert store.period_spend(db, keys[:1], [DAY], DAY) == [(300, 600)]  # its own hold is gone, its cost counted


def test_no_module_but_the_spend_store_has_spend_sql() -> None:
    sql = re.compile(
        r"\b(FROM|INTO|UPDATE|TRUNCATE|JOIN|TABLE)\s+(spend_limits|spend_holds|spend_counters|spend_usage)\b"
        r"|\b(spend_limits|spend_holds|spend_counters|spend_usage)\s+(AS\s+)?[a-z]\b"  # aliased: "spend_usage u"
        r"|\bspend_(reserve|settle|settle_batch)\(",
        re.IGNORECASE,
    )
    offenders = [
        str(path.relative_to(ROOT))
        for top in ("common", "functions", "gateway", "gatewayctl", "bench")
        for path in sorted((ROOT / top).rglob("*.py"))
        if path != ROOT / "common/spend/store.py" and sql.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_spend_package_declares_every_module() -> None:
    modules = {p.stem for p in (ROOT / "common/spend").glob("*.py") if p.stem != "__init__"}
    assert set(common.spend.__all__) == modules
    assert common.spend.__doc__ and "store" in common.spend.__doc__


def test_a_reserve_sees_a_concurrent_settle_whole_never_half(tmp_path: Path, database_url: str) -> None:
    """A settle moves a request's cost from its hold to the counters in one transaction; a reserve
    must see it before (hold) or after (counter), never neither. The settle below commits while the
    reserve waits between reading counters and reading holds (a lock on spend_holds pins it there)."""
    import threading

    import pg8000.dbapi

    setup_gateway(tmp_path, database_url)
    db = pool.get()
    key = "user:a@example.com"
    first = _row("a@example.com", 1000, 200)
    _, admitted, _ = store.reserve(db, first.reservation_key, [key], [DAY], [1000], DAY, 600, 60, [key])
    assert admitted
    settler = pg8000.dbapi.connect(**pool.parse_url(database_url))
    try:
        cursor = settler.cursor()
        cursor.execute("LOCK TABLE spend_holds IN ACCESS EXCLUSIVE MODE")
        seen: list[tuple[list[tuple[int, int]], bool, int]] = []
        racer = threading.Thread(
            target=lambda: seen.append(store.reserve(db, str(uuid.uuid4()), [key], [DAY], [1000], DAY, 600, 60, [key]))
        )
        racer.start()
        deadline = time.monotonic() + 10
        while not db.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'spend_holds'::regclass")[
            0
        ][0]:
            assert time.monotonic() < deadline, "the reserve never waited for spend_holds"
            time.sleep(0.01)
        cursor.execute(
            "SELECT spend_settle(%s::uuid, %s, %s, %s::date, %s, %s, %s::text[], %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s, %s, %s, %s, %s::text[], %s::smallint[], %s)",
            first.as_args(),
        )
        settler.commit()
        racer.join(timeout=10)
    finally:
        settler.close()
    figures, admitted, _ = seen[0]
    assert figures in ([(0, 600)], [(1000, 0)]), figures
    assert admitted == (figures == [(0, 600)])  # 1000 settled is at the cap of 1000
