"""Retention (issue 14, finding 12: nothing was ever deleted) and the daily rollups, on a real Postgres.

Each table loses exactly the rows `retention:` says are too old, in batches of
`batch_rows` statements, under one advisory lock; the rollups the cost report
reads equal the ledger whatever path wrote it (settle, batch, replay, seed).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import activate, base_config, deep_merge, parsed_config, write_config
from support.spend import settle_row

from common import config
from common.admin import retention
from common.db import pool
from common.db import retention as db_retention
from common.spend import store
from common.spend.store import SettleRow

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _setup(tmp_path: Path, database_url: str, extra: dict[str, Any] | None = None) -> Path:
    path = write_config(tmp_path, deep_merge(base_config(database_url), extra or {}))
    activate(path)
    pool.get()
    return path


def _row(
    email: str,
    day: date,
    cost: int,
    *,
    model: str = "claude-haiku-4-5",
    groups: tuple[str, ...] = ("eng",),
    status: int = 200,
) -> SettleRow:
    at = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    row: SettleRow = settle_row(
        email, at, cost, model=model, groups=groups, status=status, counters=(("user:" + email, 0),)
    )
    return row


def _rollup_equals_ledger(db: pool.Database) -> None:
    columns = "day, user_email, model, groups"
    sums = (
        "count(*), count(*) FILTER (WHERE status >= 400 OR status IS NULL), sum(input_tokens), sum(output_tokens),"
        " sum(cache_read_tokens), sum(cache_write_5m_tokens), sum(cache_write_1h_tokens), sum(cost_micros)"
    )
    raw = db.execute(f"SELECT {columns}, {sums} FROM spend_usage GROUP BY {columns} ORDER BY {columns}")  # noqa: S608
    rolled = db.execute(
        f"SELECT {columns}, requests, errors, input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,"  # noqa: S608
        f" cache_write_1h_tokens, cost_micros FROM spend_daily ORDER BY {columns}"
    )
    assert [tuple(r) for r in rolled] == [tuple(r) for r in raw]


def test_the_rollups_equal_the_ledger_through_every_settle_path_and_a_replay_counts_once(
    tmp_path: Path, database_url: str
) -> None:
    _setup(tmp_path, database_url)
    db = pool.get()
    day = date(2026, 6, 1)
    alone = _row("a@example.com", day, 100)
    batch = [
        _row("a@example.com", day, 200),
        _row("b@example.com", day, 300, groups=()),
        _row("a@example.com", day, 5, status=529),
        _row("a@example.com", day, 7, model="claude-opus-4-5"),
    ]
    store.settle(db, alone)
    store.settle_batch(db, batch)
    store.settle_batch(db, [batch[0], alone, _row("c@example.com", day + timedelta(days=1), 1)])  # two replays
    _rollup_equals_ledger(db)
    a = db.execute(
        "SELECT requests, errors, cost_micros FROM spend_daily WHERE user_email = 'a@example.com'"
        " AND model = 'claude-haiku-4-5'"
    )
    assert [tuple(r) for r in a] == [(3, 1, 305)]
    # The report reads the rollups and gives what the ledger gives.
    report = store.cost_report(db, day, day + timedelta(days=2), ["user", "group"], limit=100)
    assert {(r.keys["user"], r.keys["group"]): (r.cost_micros, r.requests) for r in report.rows} == {
        ("a@example.com", "eng"): (312, 4),
        ("b@example.com", None): (300, 1),
        ("c@example.com", "eng"): (1, 1),
    }
    assert report.total_micros == 613
    empty = store.cost_report(db, date(2020, 1, 1), date(2020, 2, 1), ["day"], limit=10)
    assert empty.rows == [] and empty.total_micros == 0


def _seed_ages(db: pool.Database) -> None:
    """Rows on either side of every default cut-off as of NOW."""
    for day, email in ((date(2025, 5, 14), "old@example.com"), (date(2025, 5, 16), "kept@example.com")):
        store.settle(db, _row(email, day, 10))
    db.execute(
        "INSERT INTO spend_daily (day, user_email, model, groups, requests, errors, input_tokens, output_tokens,"
        " cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cost_micros)"
        " VALUES ('2024-05-14', 'ancient@example.com', 'm', '{}', 1, 0, 0, 0, 0, 0, 0, 1)"
    )
    db.execute("INSERT INTO spend_counters (scope_key, day, shard, spent_micros) VALUES ('org', '2024-05-14', 0, 1)")
    db.execute(
        "INSERT INTO spend_holds (reservation_id, scope_key, amount_micros, expires_at) VALUES"
        " (gen_random_uuid(), 'org', 5, now() - interval '1 minute'), (gen_random_uuid(), 'org', 6, now() + interval '1 hour')"
    )
    db.execute(
        "INSERT INTO audit_log (at, actor, action) SELECT %s::timestamptz - make_interval(days => d), 'x', 'a' || d"
        " FROM generate_series(0, 400) d",
        (NOW,),
    )
    for sid, expires, revoked in (
        ("s-expired-long-ago", NOW - timedelta(days=91), None),
        ("s-expired-recently", NOW - timedelta(days=89), None),
        ("s-revoked-long-ago", NOW + timedelta(days=10), NOW - timedelta(days=100)),
        ("s-live", NOW + timedelta(days=20), None),
    ):
        db.execute(
            "INSERT INTO auth_sessions (id, sub, email, expires_at, revoked_at) VALUES (%s, 's', 'e@example.com', %s, %s)",
            (sid, expires, revoked),
        )
        db.execute("INSERT INTO refresh_tokens (token_hash, session_id) VALUES (%s, %s)", ("h-" + sid, sid))
    for code, expires in (("old", NOW - timedelta(hours=25)), ("new", NOW - timedelta(hours=23))):
        db.execute(
            "INSERT INTO device_codes (device_code_hash, user_code, expires_at, interval_seconds)"
            " VALUES (%s, %s, %s, 5)",
            (code, code.upper(), expires),
        )
    for bucket, start in (("token:1", NOW - timedelta(hours=25)), ("token:2", NOW - timedelta(hours=1))):
        db.execute("INSERT INTO rate_limits (bucket, window_start, hits) VALUES (%s, %s, 1)", (bucket, start))


def test_a_sweep_deletes_exactly_what_is_too_old_in_every_table(tmp_path: Path, database_url: str) -> None:
    _setup(tmp_path, database_url, {"retention": {"batch_rows": 7}})
    db = pool.get()
    _seed_ages(db)
    outcome = retention.sweep(config.current(), now=NOW)
    assert outcome.complete and not outcome.skipped
    assert outcome.deleted == {
        "spend_usage": 1,
        "fleet_client_days": 1,  # the fleet tables follow the usage rows (migration 012)
        "fleet_client_sessions": 1,
        "fleet_sessions": 1,
        "spend_daily": 1,
        "spend_counters": 1,
        "spend_holds": 1,
        "audit_log": 400 - 365,
        "auth_sessions": 2,
        "device_codes": 1,
        "rate_limits": 1,
    }
    assert outcome.batches >= 8 + (400 - 365) // 7  # bounded statements: 35 audit rows took 5 + 1 batches
    q = lambda sql: [r[0] for r in db.execute(sql)]  # noqa: E731
    assert q("SELECT user_email FROM spend_usage") == ["kept@example.com"]
    # The swept month's usage is gone but its rollup stays: the cost report still covers it.
    assert sorted(q("SELECT user_email FROM spend_daily")) == ["kept@example.com", "old@example.com"]
    assert q("SELECT amount_micros FROM spend_holds") == [6]
    assert q("SELECT min(at) FROM audit_log")[0] >= NOW - timedelta(days=365)
    assert sorted(q("SELECT id FROM auth_sessions")) == ["s-expired-recently", "s-live"]
    assert sorted(q("SELECT session_id FROM refresh_tokens")) == ["s-expired-recently", "s-live"]
    assert q("SELECT device_code_hash FROM device_codes") == ["new"]
    assert q("SELECT bucket FROM rate_limits") == ["token:2"]
    again = retention.sweep(config.current(), now=NOW)
    assert set(again.deleted.values()) == {0}


def test_null_keeps_a_table_forever(tmp_path: Path, database_url: str) -> None:
    _setup(
        tmp_path,
        database_url,
        {
            "retention": {
                "audit_days": None,
                "spend_usage_months": None,
                "spend_rollup_months": None,
                "sessions_days_after_expiry": None,
            }
        },
    )
    db = pool.get()
    _seed_ages(db)
    outcome = retention.sweep(config.current(), now=NOW)
    assert set(outcome.deleted) == {"spend_holds", "device_codes", "rate_limits"}
    assert db.execute("SELECT count(*) FROM audit_log")[0][0] == 401


def test_one_instance_sweeps_at_a_time_and_a_budget_stops_between_batches(tmp_path: Path, database_url: str) -> None:
    _setup(tmp_path, database_url)
    db = pool.get()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow(n: int) -> int:
        calls.append(n)
        started.set()
        release.wait(10)
        return 0

    holder = threading.Thread(
        target=db_retention.sweep,
        args=(db, [db_retention.Task("slow", slow)]),
        kwargs={"batch_rows": 3, "max_seconds": 30},
    )
    holder.start()
    assert started.wait(10)
    second = db_retention.sweep(
        db, [db_retention.Task("other", lambda n: calls.append(-n) or 0)], batch_rows=3, max_seconds=30
    )
    release.set()
    holder.join(10)
    assert second.skipped and calls == [3]
    # With the lock free again, a sweep over budget stops after the batch in progress, and reports it.
    endless = db_retention.sweep(db, [db_retention.Task("endless", lambda n: n)], batch_rows=5, max_seconds=0.05)
    assert not endless.complete and endless.deleted["endless"] == 5 * endless.batches > 0


@pytest.mark.parametrize(
    ("retention_cfg", "message"),
    [
        ({"audit_days": 0}, "retention.audit_days: expected a positive whole number or null"),
        ({"spend_usage_months": 13, "spend_rollup_months": 12}, "retention.spend_rollup_months: must be at least"),
        ({"spend_usage_months": None}, "retention.spend_rollup_months: must be at least spend_usage_months (None)"),
        ({"spend_usage_months": 1, "spend_rollup_months": 1}, "retention.spend_rollup_months: expected at least 2"),
        ({"batch_rows": 0}, "retention.batch_rows: expected 1 to 100000"),
        ({"max_seconds": 0}, "retention.max_seconds: expected a number in (0, 3600]"),
        ({"device_codes_hours_after_expiry": -1}, "retention.device_codes_hours_after_expiry: expected 0 or more"),
    ],
)
def test_bad_retention_settings_name_the_key(retention_cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        parsed_config({"retention": retention_cfg})
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_the_defaults_are_anthropics() -> None:
    r = parsed_config().retention
    assert (r.audit_days, r.spend_usage_months, r.sessions_days_after_expiry) == (365, 13, 90)


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 6, 15), 13, date(2025, 5, 15)),
        (date(2026, 3, 31), 1, date(2026, 2, 28)),
        (date(2024, 3, 31), 1, date(2024, 2, 29)),
        (date(2026, 1, 10), 25, date(2023, 12, 10)),
    ],
)
def test_months_before(day: date, months: int, expected: date) -> None:
    assert retention.months_before(day, months) == expected


def _gateway(*args: str, config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--config", str(config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_seed_and_sweep_commands(tmp_path: Path, database_url: str) -> None:
    path = _setup(tmp_path, database_url)
    seeded = _gateway(
        "seed", "--users", "7", "--days", "12", "--per-day", "3", "--audit-per-day", "5", config_path=path
    )
    assert seeded.returncode == 0, seeded.stderr
    assert "day 10/12" in seeded.stdout and "seeded 252 usage rows for 7 developers over 12 days" in seeded.stdout
    db = pool.get()
    shape = db.execute("SELECT count(*), count(DISTINCT user_email), count(DISTINCT day) FROM spend_usage")[0]
    assert tuple(shape) == (252, 7, 12)
    _rollup_equals_ledger(db)
    counters = db.execute("SELECT sum(spent_micros) FROM spend_counters WHERE scope_key LIKE 'user:%%'")[0][0]
    assert counters == db.execute("SELECT sum(cost_micros) FROM spend_usage")[0][0]
    assert db.execute("SELECT count(*) FROM audit_log")[0][0] == 60
    refused = _gateway("seed", "--users", "1", "--days", "1", config_path=path)
    assert refused.returncode == 2 and "--append" in refused.stderr
    swept = _gateway("retention", "sweep", config_path=path)
    assert swept.returncode == 0, swept.stderr
    assert '"complete": true' in swept.stdout and '"spend_usage": 0' in swept.stdout
