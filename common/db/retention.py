"""Batched deletes under one advisory lock: how a retention sweep runs, whatever the tables.

The owners of the tables give the deletes (`Task`: delete at most `batch` rows
in one statement, return how many); `sweep()` runs each task until it deletes
fewer than a batch or the time budget is spent, holding a session-level
`pg_try_advisory_lock` on its own connection so one instance sweeps at a time
(a second sweep returns at once with `skipped`). Each batch is its own short
transaction: locks are held for one batch only, and a sweep stopped halfway
(budget, SIGTERM, lost connection) leaves nothing half done. The lock's
connection is one of the pool's, so the pool needs at least two.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from common.db.pool import Database

LOCK_ID = 0x7265_7465  # "rete": pg_advisory_lock key of retention sweeps


@dataclass(frozen=True, slots=True)
class Task:
    name: str  # what the report calls it, e.g. spend_usage
    delete: Callable[[int], int]  # delete at most n rows in one statement; how many went


@dataclass(slots=True)
class Outcome:
    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0
    complete: bool = True  # False: the budget ran out before every task was done
    skipped: bool = False  # another sweep held the lock


def sweep(db: Database, tasks: Sequence[Task], *, batch_rows: int, max_seconds: float) -> Outcome:
    """Run every task to completion (or until `max_seconds`), one batch per statement, under the lock."""
    started = time.monotonic()
    outcome = Outcome()
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,))
        row = cursor.fetchone()
        if not row or not row[0]:
            outcome.skipped = True
            return outcome
        try:
            for task in tasks:
                outcome.deleted[task.name] = 0
                while True:
                    if time.monotonic() - started >= max_seconds:
                        outcome.complete = False
                        break
                    n = task.delete(batch_rows)
                    outcome.batches += 1
                    outcome.deleted[task.name] += n
                    if n < batch_rows:
                        break
                if not outcome.complete:
                    break
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    outcome.seconds = time.monotonic() - started
    return outcome
