"""What an instance does with its unsettled spend when it is told to stop (SIGTERM).

Cloud Run sends SIGTERM and, `GRACE_SECONDS` later, SIGKILL. In that window,
measured from the signal:

1. until `STREAMS_SECONDS`, streams still being relayed may end by themselves
   (their settle is the upstream's real figure);
2. then every hook registered with `on_terminate` runs: the proxy settles the
   streams still open with what they relayed (the abort floor);
3. until `SPILL_SECONDS`, the retry queue is flushed to the database, and
   the instance's budget leases are released (`leases.LEASES.release_all`:
   one statement; a lease the database does not take expires by its TTL);
4. then what it still holds is written as `spend.unsettled` log lines (the
   whole settle row each), which `python -m gateway spend replay` applies
   later; from then on a settle the database refuses is spilled at once.

How the signal is seen: gunicorn's worker owns SIGTERM in its main thread
(its handler only sets `worker.alive = False`), and our code runs in its
request threads, where Python cannot install a handler. So `watch()` starts a
thread that polls the `alive` flag of the worker whose bound `handle_exit` is
the SIGTERM handler; outside gunicorn, called from the main thread, it chains
its own handler instead. `watch()` is called when there is something to
save (a stream starts, a settle is queued) and is a no-op once watching.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from common.core import logs
from common.db import pool
from common.spend import leases, queue, store

__all__ = [
    "GRACE_SECONDS",
    "SPILL_SECONDS",
    "STREAMS_SECONDS",
    "on_terminate",
    "release_leases",
    "reset",
    "terminate",
    "terminating",
    "watch",
]

GRACE_SECONDS = 10.0  # Cloud Run: SIGKILL this long after SIGTERM
STREAMS_SECONDS = 5.0  # open streams may finish on their own until then
SPILL_SECONDS = 8.0  # queue flushed until then; the rest is logged, ahead of SIGKILL
POLL_SECONDS = 0.2

_hooks: list[Callable[[], int]] = []
_open_streams: list[Callable[[], int]] = []
_lock = threading.Lock()
_watching = False
_terminating = threading.Event()


def on_terminate(hook: Callable[[], int], *, open_count: Callable[[], int] | None = None) -> None:
    """Run `hook` (returns how many settles it made) at step 2; `open_count` says how many streams are open."""
    with _lock:
        if hook not in _hooks:
            _hooks.append(hook)
        if open_count is not None and open_count not in _open_streams:
            _open_streams.append(open_count)


def terminating() -> bool:
    """Has this instance been told to stop?"""
    return _terminating.is_set()


def _gunicorn_worker() -> Any:
    handler = signal.getsignal(signal.SIGTERM)
    worker = getattr(handler, "__self__", None)
    return worker if worker is not None and hasattr(worker, "alive") else None


def watch() -> None:
    """Start noticing SIGTERM (once per process)."""
    global _watching
    if _watching:
        return
    with _lock:
        if _watching:
            return
        worker = _gunicorn_worker()
        if worker is not None:
            threading.Thread(target=_poll, args=(worker,), name="spend-shutdown-watch", daemon=True).start()
        elif threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGTERM)

            def handler(signum: int, frame: Any) -> None:
                _start()
                if callable(previous):
                    previous(signum, frame)
                elif previous == signal.SIG_DFL:
                    raise SystemExit(128 + signum)

            signal.signal(signal.SIGTERM, handler)
        else:
            return  # no way to see the signal here: the atexit spill (queue) still applies
        _watching = True


def _poll(worker: Any) -> None:
    while getattr(worker, "alive", False):
        time.sleep(POLL_SECONDS)
    _start()


def _start() -> None:
    if _terminating.is_set():
        return
    _terminating.set()
    threading.Thread(target=terminate, name="spend-shutdown", daemon=True).start()


def _open() -> int:
    with _lock:
        counters = list(_open_streams)
    return sum(count() for count in counters)


def terminate(started: float | None = None) -> None:
    """Steps 1-4 above (runs in its own thread after the signal; tests call it directly)."""
    _terminating.set()
    t0 = time.monotonic() if started is None else started
    logs.info("instance stopping; settling in-flight spend", open_streams=_open(), queued=queue.pending())
    while _open() and time.monotonic() < t0 + STREAMS_SECONDS:
        time.sleep(0.05)
    with _lock:
        hooks = list(_hooks)
    for hook in hooks:
        try:
            settled = hook()
        except Exception as exc:  # one failing hook must not keep the queue from being saved
            logs.error("shutdown settle hook failed", error=f"{type(exc).__name__}: {exc}")
            continue
        if settled:
            logs.warning("in-flight streams settled with what they relayed at shutdown", streams=settled)
    queue.PENDING.flush_until(t0 + SPILL_SECONDS)
    release_leases()
    spilled = queue.PENDING.spill("shutdown")
    queue.PENDING.spill_from_now()
    logs.info("instance spend saved", written_or_spilled_at_shutdown=spilled, still_open_streams=_open())


def release_leases(book: leases.LeaseBook | None = None) -> int:
    """Stop leasing and drop the holds of every idle lease (one statement); how many hold rows went.

    With a settle still queued its lease is kept (it holds what that settle will add) and
    expires by its TTL; so does every lease if the database is away."""
    book = leases.LEASES if book is None else book
    keys = book.release_all()
    if not keys or queue.pending():
        return 0
    try:
        return store.release_leases(pool.get(), keys)
    except Exception as exc:
        logs.warning("budget leases not released at shutdown; they expire by their TTL", error=pool.describe_error(exc))
        return 0


def reset() -> None:
    """Forget that a stop began (tests)."""
    _terminating.clear()
    queue.PENDING.spill_from_now(False)
    leases.LEASES.clear()
