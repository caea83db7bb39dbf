"""The fleet tables (migration 012) equal the raw ledger, on a real Postgres, through every path that writes it.

The fleet page reads `fleet_client_days`, `fleet_client_sessions` and
`fleet_sessions` (kept by a trigger on spend_usage) instead of every usage row of its window. Each figure it shows
(versions with users, sessions, requests and last seen; verdict counts; the
sessions list by search, verdict and page; users last seen) is compared with
the same figure computed from `spend_usage` itself, for every window the page
offers, after single settles, batches, replays, a late batch of older requests,
equal timestamps, the migration's backfill of rows already there, and a
retention sweep.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from support import activate, base_config, deep_merge, write_config
from support.spend import settle_row

from common import config
from common.admin import fleet, retention
from common.console import pages
from common.core import periods
from common.db import migrations, pool
from common.spend import store
from common.spend.store import SettleRow

TODAY = periods.today()
CLI = "claude-cli/2.1.333"


def _row(
    email: str,
    at: datetime,
    *,
    session: str | None,
    client: str | None = CLI,
    check: str | None = "match",
    cost: int = 100,
) -> SettleRow:
    row: SettleRow = settle_row(email, at, cost, client=client, session_id=session, settings_check=check)
    return row


def _at(days_back: int, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(TODAY - timedelta(days=days_back), time(hour, minute), tzinfo=UTC)


# --- the same figures straight from the ledger (latest = greatest (at, id), as the tables define it) ------

_RAW_LATEST = (
    "WITH latest AS (SELECT DISTINCT ON (session_id) session_id, user_email, at, client, settings_check"
    " FROM spend_usage WHERE day >= %s AND day <= %s AND session_id IS NOT NULL ORDER BY session_id, at DESC, id DESC)"
)


def _raw_checks(db: pool.Database, first: date) -> dict[str, int]:
    rows = db.execute(
        _RAW_LATEST + " SELECT coalesce(settings_check, 'none'), count(*) FROM latest GROUP BY 1",  # noqa: S608
        (first, TODAY),
    )
    return {str(r[0]): int(r[1]) for r in rows}


def _raw_sessions(db: pool.Database, first: date, search: str, check: str | None) -> list[tuple[Any, ...]]:
    rows = db.execute(
        _RAW_LATEST + " SELECT session_id, user_email, at, client, settings_check FROM latest"  # noqa: S608
        " WHERE strpos(user_email, %s) > 0 AND (%s::text IS NULL OR coalesce(settings_check, 'none') = %s)"
        " ORDER BY at DESC, session_id",
        (first, TODAY, search, check, check),
    )
    return [tuple(r) for r in rows]


def _raw_seen(db: pool.Database, first: date, search: str) -> list[tuple[Any, ...]]:
    rows = db.execute(
        "WITH u AS (SELECT DISTINCT user_email AS email FROM spend_usage WHERE day >= %s AND strpos(user_email, %s) > 0)"
        " SELECT u.email, l.at, l.client, l.settings_check FROM u CROSS JOIN LATERAL"
        " (SELECT at, client, settings_check FROM spend_usage s WHERE s.user_email = u.email"
        "  ORDER BY at DESC, id DESC LIMIT 1) l ORDER BY l.at DESC, u.email",
        (first, search),
    )
    return [tuple(r) for r in rows]


_TABLES_AND_LEDGER = (
    (
        "SELECT day, client, sum(requests), max(last_at) FROM fleet_client_days GROUP BY day, client"
        " ORDER BY day, client",
        "SELECT day, client, count(*), max(at) FROM spend_usage GROUP BY day, client ORDER BY day, client",
    ),
    (
        "SELECT client, session_id, user_email, last_day, last_at FROM fleet_client_sessions"
        " ORDER BY client, session_id, user_email",
        "SELECT client, session_id, user_email, max(day), max(at) FROM spend_usage"
        " GROUP BY client, session_id, user_email ORDER BY client, session_id, user_email",
    ),
    (
        "SELECT user_email, session_id, last_at, last_day, last_usage_id, client, settings_check FROM fleet_sessions"
        " ORDER BY user_email, session_id",
        "SELECT DISTINCT ON (user_email, session_id) user_email, session_id, at, day, id, client, settings_check"
        " FROM spend_usage ORDER BY user_email, session_id, at DESC, id DESC",
    ),
)


def _tables_equal_the_ledger(db: pool.Database) -> None:
    for table, ledger in _TABLES_AND_LEDGER:
        assert [tuple(r) for r in db.execute(table)] == [tuple(r) for r in db.execute(ledger)]


def _page_figures_equal_the_ledger(db: pool.Database) -> int:
    """Every figure of every window, filter and page the fleet page offers; returns how many sessions it compared."""
    compared = 0
    for days in pages.FLEET_WINDOWS:
        first = TODAY - timedelta(days=int(days) - 1)
        # The raw versions query is the one the page ran on spend_usage before migration 012.
        assert fleet.client_versions(db, first) == store.client_versions(db, first, TODAY)
        assert fleet.session_checks(db, first) == _raw_checks(db, first)
        for search in ("", "ann", "%"):
            for check in (None, *pages.CHECKS):
                want = _raw_sessions(db, first, search, check)
                got: list[tuple[Any, ...]] = []
                for offset in range(0, len(want) + 2, 2):  # pages of 2, one past the end
                    page, total = fleet.latest_sessions(db, first, search, check, 2, offset)
                    assert total == len(want)
                    got += page
                assert got == want, (days, search, check)
                compared += len(want)
            seen = _raw_seen(db, first, search)
            got_seen: list[tuple[Any, ...]] = []
            for offset in range(0, len(seen) + 2, 2):
                page, total = fleet.users_last_seen(db, first, search, 2, offset)
                assert total == len(seen)
                got_seen += page
            assert got_seen == seen, (days, search)
    return compared


def _setup(tmp_path: Path, database_url: str, extra: dict[str, Any] | None = None) -> pool.Database:
    activate(write_config(tmp_path, deep_merge(base_config(database_url), extra or {})))
    return pool.get()


def test_the_fleet_tables_and_every_page_figure_equal_the_ledger_through_every_settle_path(
    tmp_path: Path, database_url: str
) -> None:
    db = _setup(tmp_path, database_url)
    ann, bob, cy = "ann@example.com", "bob@example.com", "cy@example.com"
    store.settle(db, _row(ann, _at(0, 9), session="s-ann-1"))
    store.settle(db, _row(ann, _at(3, 9), session="s-ann-1", check="unknown"))  # older: not the latest
    batch = [
        _row(ann, _at(0, 10), session="s-ann-2", client="claude-cli/2.1.330", check="missing"),
        _row(bob, _at(2, 8), session="s-bob", check=None),
        _row(bob, _at(2, 8), session="s-bob", check="unknown"),  # the same instant: the later id is the latest
        _row(cy, _at(10, 8), session="s-cy", client=None, check=None),
        _row(cy, _at(0, 7), session=None, client="curl/8.5"),  # no sign-in session: counts as a request only
        _row(cy, _at(20, 7), session="s-cy-old", cost=0),  # an error that cost nothing: no counter row
    ]
    store.settle_batch(db, batch)
    store.settle_batch(db, [batch[0], batch[1]])  # a replay inserts nothing
    store.settle(db, batch[3])
    # A batch settled late (a retry) with an older request of a session: the latest stays the latest.
    store.settle_batch(
        db, [_row(ann, _at(1, 23), session="s-ann-2", check="match"), _row(bob, _at(0, 6), session="s-b2")]
    )
    _tables_equal_the_ledger(db)
    assert (
        db.execute(
            "SELECT requests FROM fleet_client_days WHERE day = %s AND client IS NULL", (TODAY - timedelta(days=10),)
        )[0][0]
        == 1
    )
    assert db.execute("SELECT settings_check FROM fleet_sessions WHERE session_id = 's-ann-2'")[0][0] == "missing"
    assert _page_figures_equal_the_ledger(db) > 0
    seven = fleet.client_versions(db, TODAY - timedelta(days=6))
    assert seven[-1][1:4] == (3, 4, 8)  # the total row: 3 users, 4 sessions, 8 requests in 7 days

    # Settles on other connections write other shards of a day x client row; the readers sum them.
    used = {int(r[0]) for r in db.execute("SELECT shard FROM fleet_client_days WHERE day = %s", (TODAY,))}
    for _ in range(50):
        other = pool.Database(config.current().store)
        try:
            if int(other.execute("SELECT pg_backend_pid() % 16")[0][0]) not in used:
                store.settle(other, _row(ann, _at(0, 11), session="s-ann-1"))
                break
        finally:
            other.close()
    shards = db.execute("SELECT count(*) FROM fleet_client_days WHERE day = %s AND client = %s", (TODAY, CLI))
    assert shards[0][0] >= 2
    _tables_equal_the_ledger(db)
    _page_figures_equal_the_ledger(db)

    # Retention: usage rows of days before the cut go, and with them their fleet rows; what is left
    # (and every page figure) is again what the remaining ledger says.
    cut = TODAY - timedelta(days=5)
    assert store.sweep_usage(db, cut, 100) == 2
    assert fleet.sweep_client_days(db, cut, 1) == 1 and fleet.sweep_client_days(db, cut, 10) == 1
    assert fleet.sweep_client_sessions(db, cut, 10) == 2
    assert fleet.sweep_sessions(db, cut, 10) == 2  # s-cy, s-cy-old: their latest requests were swept
    _tables_equal_the_ledger(db)
    _page_figures_equal_the_ledger(db)


def test_the_retention_sweep_keeps_the_fleet_tables_equal_to_the_ledger(tmp_path: Path, database_url: str) -> None:
    db = _setup(tmp_path, database_url, {"retention": {"spend_usage_months": 1}})
    store.settle(db, _row("old@example.com", _at(70, 9), session="s-old"))
    store.settle(db, _row("both@example.com", _at(70, 9), session="s-both"))
    store.settle(db, _row("both@example.com", _at(1, 9), session="s-both", check="unknown"))
    outcome = retention.sweep(config.current())
    assert outcome.deleted["spend_usage"] == 2
    # One day x client, in one shard per settle statement's connection.
    assert 1 <= outcome.deleted["fleet_client_days"] <= 2 and outcome.deleted["fleet_sessions"] == 1
    assert outcome.deleted["fleet_client_sessions"] == 1
    _tables_equal_the_ledger(db)
    # The session seen on both sides of the cut keeps its latest request, which the ledger still holds.
    assert [tuple(r) for r in db.execute("SELECT session_id, settings_check FROM fleet_sessions")] == [
        ("s-both", "unknown")
    ]


def test_the_migration_backfills_the_rows_already_in_the_ledger(tmp_path: Path, database_url: str) -> None:
    earlier = tmp_path / "migrations"
    earlier.mkdir()
    for version, _, path in migrations.migration_files():
        if version < 12:
            shutil.copy(path, earlier / path.name)
    activate(write_config(tmp_path, base_config(database_url)))
    db = pool.Database(config.current().store)
    try:
        migrations.migrate(db, earlier)
        store.settle_batch(
            db,
            [
                _row("ann@example.com", _at(0, 9), session="s1"),
                _row("ann@example.com", _at(0, 9), session="s1", check="unknown"),
                _row("bob@example.com", _at(4, 9), session=None, client=None, check=None),
            ],
        )
        later = [path.stem for version, _, path in migrations.migration_files() if version >= 12]
        assert migrations.migrate(db) == later and later[0] == "012_fleet_sessions"
        _tables_equal_the_ledger(db)
        assert db.execute("SELECT count(*) FROM fleet_sessions")[0][0] == 2
        store.settle(db, _row("ann@example.com", _at(0, 10), session="s1", check="missing"))  # the trigger from now on
        _tables_equal_the_ledger(db)
    finally:
        db.close()
