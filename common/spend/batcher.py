"""Group commit: settles that arrive while another is in flight share its next statement.

One settle at a time per process talks to the database (the leader); the
ones that arrive meanwhile wait, and the next leader writes all of them (up
to BATCH_MAX) in one `store.settle_batch` statement. Every caller still
returns only once its own usage is committed (Cloud Run throttles CPU after
the response, so nothing may be left for later), but under load the
per-statement cost of the driver and the server is shared. A lone settle is
one `store.settle`.

One bad row must not sink the others: a batch the database refuses for its
data (`store.refused`: a NUL or an out-of-range figure in one row) is retried
row by row (`write_one`), and a row refused on its own is written once more
with its text fields cleaned (`store.sanitized`: its spend still counts); if
even that is refused it is parked: logged as a `spend.unsettled` line holding
the whole row (`park`), never queued, so it blocks nothing. A connection
error is not the row's fault: every caller of that batch gets it (and queues).
"""

from __future__ import annotations

import threading

from common.core import logs
from common.db import pool
from common.spend import store
from common.spend.store import SettleRow

UNSETTLED = "spend.unsettled"  # the message of a log line holding a settle row not in the database


def park(row: SettleRow, reason: str, error: BaseException | None = None) -> None:
    """Log `row` whole as a `spend.unsettled` line (what `gateway spend replay` reads)."""
    logs.error(
        UNSETTLED,
        reason=reason,
        error=pool.describe_error(error) if error is not None else None,
        user=row.user_email,
        cost_micros=row.cost_micros,
        row=row.as_item(),
    )


def write_one(db: pool.Database, row: SettleRow) -> None:
    """`store.settle`, with a row the database refuses for its data cleaned and retried, else parked.

    Raises only what is not the row's fault (the database is away)."""
    try:
        store.settle(db, row)
        return
    except Exception as exc:
        if not store.refused(exc):
            raise
        first = exc
    clean = store.sanitized(row)
    if clean != row:
        try:
            store.settle(db, clean)
        except Exception as exc:
            if not store.refused(exc):
                raise
        else:
            logs.warning(
                "spend settle refused for its text; written with control characters replaced",
                error=pool.describe_error(first),
                reservation=row.reservation_key,
                cost_micros=row.cost_micros,
            )
            return
    park(row, "refused", first)


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
        errors: dict[int, BaseException] = {}
        try:
            errors = _write(db, batch)
        except Exception as exc:
            errors = {id(w): exc for w in batch}
        finally:
            for other in batch:
                if other is not waiter:
                    other.error = errors.get(id(other))
                    other.done.set()
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._busy = False
        error = errors.get(id(waiter))
        if error is not None:
            raise error


def _write(db: pool.Database, batch: list[_Waiter]) -> dict[int, BaseException]:
    """Write the batch; the errors of the waiters whose row is not in the database (by id)."""
    if len(batch) == 1:
        write_one(db, batch[0].row)
        return {}
    try:
        store.settle_batch(db, [w.row for w in batch])
        return {}
    except Exception as exc:
        if not store.refused(exc):
            raise
        logs.warning("spend settle batch refused; writing its rows one by one", rows=len(batch))
    errors: dict[int, BaseException] = {}
    for w in batch:
        try:
            write_one(db, w.row)
        except Exception as exc:  # the database went away meanwhile: the rest would fail alike
            errors.update({id(rest): exc for rest in batch if id(rest) not in errors and rest is not w})
            errors[id(w)] = exc
            break
    return errors


GROUP_COMMIT = GroupCommit()
