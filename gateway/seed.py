"""`python -m gateway seed`: a synthetic history for measurement (docs/operations.md).

Writes, day by day from `--days` ago to today, `--per-day` requests for each of
`--users` developers (usage rows, their daily rollups through the ledger's own
trigger, and their per-day counters) and `--audit-per-day` audit events, with
one INSERT … SELECT generate_series statement per day and table, printing
progress. The SQL lives with each table's owner (`spend.store.seed_usage`,
`audit.records.seed`). Refuses a database that already holds usage unless
`--append`.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import msgspec

from common import config
from common.audit import records
from common.core import periods
from common.db import pool
from common.spend import store as spend_store

MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5")


def main(*, users: int, days: int, per_day: int, audit_per_day: int, append: bool) -> int:
    pool.get()  # migrations applied
    # Its own pool: one day's INSERT of 200k rows outlasts the request path's socket timeout.
    db = pool.Database(msgspec.structs.replace(config.current().store, connect_timeout_seconds=600.0))
    if not append and spend_store.has_usage(db):
        print("refusing: the database already holds usage rows (use --append to add to them)", file=sys.stderr)
        return 2
    today = periods.today()
    started = time.monotonic()
    written = 0
    for n in range(days):
        day = today - timedelta(days=days - 1 - n)
        written += spend_store.seed_usage(db, day, users, per_day, models=MODELS)
        if audit_per_day:
            records.seed(db, datetime(day.year, day.month, day.day, tzinfo=UTC), audit_per_day)
        if n % 10 == 9 or n == days - 1:
            elapsed = time.monotonic() - started
            print(f"day {n + 1}/{days} ({day}): {written:,} usage rows, {elapsed:.0f} s", flush=True)
    db.execute("ANALYZE")
    print(
        f"seeded {written:,} usage rows for {users} developers over {days} days in {time.monotonic() - started:.0f} s"
    )
    return 0
