"""Settles the database refused, kept in this process and retried until it takes them.

While the database is away a settle is queued here instead of lost; a
background thread retries with backoff, and the next settle that succeeds
also writes up to 50 queued ones. The usage row's key (the reservation key)
makes a replayed settle count once. Rows are written with `batcher.write_one`,
so a row the database refuses for its data is cleaned or parked, never left
at the head blocking the rest. The queue is bounded (PENDING_MAX); a settle
that does not fit is spilled (below) rather than dropped.

When the process is stopping (`shutdown`) or exits, `spill` writes what is
still queued as `spend.unsettled` log lines, each with the whole row, which
`python -m gateway spend replay` re-applies; once spilling has started
(`spill_from_now`), a newly refused settle is spilled at once.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections import deque

from common.core import logs
from common.db import pool
from common.spend import batcher
from common.spend.store import SettleRow

PENDING_MAX = 10_000  # queued settles kept while the database is away
MAX_RETRY_DELAY = 30.0  # seconds between background attempts, at most


class RetryQueue:
    """Refused settles in arrival order, written back oldest first.

    Lifetime: one per process (`PENDING` below), made at import and kept until
    exit. Its retry thread (a daemon) is started by the first `add()` and ends
    once the queue is empty; what is still queued when the process exits is lost
    (the Cloud Run instance is gone), which is why the next settle also flushes.
    """

    def __init__(self, capacity: int = PENDING_MAX) -> None:
        self._items: deque[SettleRow] = deque()
        self._capacity = capacity
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._spill_now = False
        self.dropped = 0

    def size(self) -> int:
        return len(self._items)

    def add(self, row: SettleRow, exc: BaseException) -> None:
        if self._spill_now:  # the instance is about to be killed: the log outlives it
            batcher.park(row, "shutdown", exc)
            return
        with self._lock:
            if len(self._items) >= self._capacity:
                self.dropped += 1
                batcher.park(row, "queue_full", exc)
                return
            self._items.append(row)
            queued = len(self._items)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._retry_loop, name="spend-settle-retry", daemon=True)
                self._thread.start()
        logs.warning("spend settle queued; the database refused it", error=pool.describe_error(exc), queued=queued)

    def flush(self, db: pool.Database | None = None, budget: int | None = None, deadline: float | None = None) -> int:
        """Write queued settles in order; stop at the first failure (the database is away) or at
        `deadline` (monotonic). A row refused for its data is cleaned or parked, not retried.
        Returns how many left the queue."""
        written = 0
        while budget is None or written < budget:
            if deadline is not None and time.monotonic() >= deadline:
                break
            with self._lock:
                if not self._items:
                    break
                row = self._items[0]
            try:
                batcher.write_one(db or pool.get(), row)
            except Exception:
                break
            with self._lock:
                if self._items and self._items[0] is row:
                    self._items.popleft()
            written += 1
        if written:
            logs.info("queued spend settles written", written=written, still_queued=len(self._items))
        return written

    def _retry_loop(self) -> None:
        delay = 1.0
        while self._items:
            self._wake.wait(delay)
            self._wake.clear()
            before = len(self._items)
            self.flush()
            delay = 1.0 if len(self._items) < before else min(delay * 2, MAX_RETRY_DELAY)

    def flush_until(self, deadline: float) -> int:
        """Retry the queue until it is empty or `deadline` (monotonic) passes; how many were written."""
        written = 0
        while self._items and time.monotonic() < deadline:
            done = self.flush(deadline=deadline)
            written += done
            if not done:
                time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        return written

    def spill(self, reason: str) -> int:
        """Log every queued settle as a `spend.unsettled` line and empty the queue; how many."""
        with self._lock:
            rows = list(self._items)
            self._items.clear()
        for row in rows:
            batcher.park(row, reason)
        if rows:
            logs.error(
                "spend settles not written before the instance stopped; logged as spend.unsettled lines: "
                "apply them with `python -m gateway spend replay`",
                rows=len(rows),
                cost_micros=sum(r.cost_micros for r in rows),
            )
        return len(rows)

    def spill_from_now(self, on: bool = True) -> None:
        """From now on (shutdown), spill a refused settle at once instead of queueing it."""
        self._spill_now = on

    def wake(self) -> None:
        """Retry now instead of at the next backoff step."""
        self._wake.set()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


PENDING = RetryQueue()
# A process that exits with settles queued (no SIGTERM seen, or after the shutdown's spill) logs them.
atexit.register(PENDING.spill, "exit")


def pending() -> int:
    """How many settles this process holds for the database."""
    return PENDING.size()


def flush() -> int:
    """Write this process's queued settles now; how many were written."""
    return PENDING.flush()


def clear() -> None:
    """Drop this process's queued settles (tests; a fresh gateway)."""
    PENDING.clear()
