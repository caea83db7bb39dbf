"""Group commit: settles that arrive while another is in flight share its next statement.

One settle at a time per process talks to the database (the leader); the
ones that arrive meanwhile wait, and the next leader writes all of them (up
to BATCH_MAX) in one `store.settle_batch` statement. Every caller still
returns only once its own usage is committed (Cloud Run throttles CPU after
the response, so nothing may be left for later), but under load the
per-statement cost of the driver and the server is shared. A lone settle is
one `store.settle`.
"""

from __future__ import annotations

import threading

from common.db import pool
from common.spend import store
from common.spend.store import SettleRow

BATCH_MAX = 64


class _Waiter:
    __slots__ = ("done", "error", "lead", "row")

    def __init__(self, row: SettleRow) -> None:
        self.row = row
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.lead = False


class GroupCommit:
    """Writes settles, sharing statements between the ones that arrive together.

    Lifetime: one per process (`GROUP_COMMIT` below), made at import and kept
    until exit; it holds no connection and is idle (no thread) between settles.
    """

    def __init__(self, batch_max: int = BATCH_MAX) -> None:
        self.batch_max = batch_max
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._busy = False

    def settle(self, db: pool.Database, row: SettleRow) -> None:
        """Commit `row` (alone or with others); raises what the database raised for its statement."""
        waiter = _Waiter(row)
        with self._lock:
            self._queue.append(waiter)
            lead = not self._busy
            self._busy = True
        if not lead:
            waiter.done.wait()
            if not waiter.lead:
                if waiter.error is not None:
                    raise waiter.error
                return
        with self._lock:
            batch = self._queue[: self.batch_max]
            del self._queue[: self.batch_max]
        error: BaseException | None = None
        try:
            if len(batch) == 1:
                store.settle(db, batch[0].row)
            else:
                store.settle_batch(db, [w.row for w in batch])
        except Exception as exc:
            error = exc
        finally:
            for other in batch:
                if other is not waiter:
                    other.error = error
                    other.done.set()
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._busy = False
        if error is not None:
            raise error


GROUP_COMMIT = GroupCommit()
