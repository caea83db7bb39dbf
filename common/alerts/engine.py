"""Deciding when a budget alert fires: `on_settled()` on the settle path, a bounded background queue, one worker.

`on_settled(cfg, reservation, cost)` is called once per request right after
the ledger's settle. It decides in memory, with no database round trip,
whether any of the caller's caps could be near a threshold: from the standing
the reserve already read (settled spend + other requests' holds, per cap) plus
this request's cost, against the lowest threshold not yet known to have fired,
less `alerts.near_percent` points of margin. A caller far from every threshold
(or without caps, or without alerts configured) costs a few comparisons.

A near cap is put on a bounded per-instance queue (at most one pending
evaluation per cap; overflow is logged and dropped, the next settle of that
cap enqueues again) and the response goes on at once. The worker thread reads
the exact settled figures (`spend_caps.standings`, one statement), inserts each
crossed threshold's event once (`delivery.claim`: the unique key makes it once
across every instance), and delivers what is due. A cap once seen near stays
on the exact path for the rest of its period on this instance, so a crossing
that the reserve-time figure underestimated (requests admitted after this one
and settled before it) is still seen by the next settle.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from common.alerts import delivery
from common.audit import records as audit
from common.config import Config
from common.core import logs, periods
from common.db import pool as store
from common.spend import caps as spend_caps

IDLE_WAIT_SECONDS = 30.0


def cap_id(cap: spend_caps.Cap) -> str:
    """A cap's identity for alerts: its scope and the counter it is checked on (per member caps: per user)."""
    return f"{cap.scope}:{cap.scope_id}:{cap.key}" + (":pooled" if cap.pooled else "")


@dataclass(frozen=True, slots=True)
class Job:
    cfg: Config
    caps: tuple[spend_caps.Cap, ...]
    day: date


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fired: set[tuple[str, str, date, int]] = set()  # events known to exist
        self.near: set[tuple[str, str, date]] = set()  # caps seen near a threshold this period
        self.queued: set[tuple[str, str, date]] = set()
        self.queue: queue.Queue[Job] | None = None
        self.thread: threading.Thread | None = None
        self.busy = False
        self.dropped = 0
        self.evaluations = 0


_state = _State()


def _pending(cfg: Config, cap: spend_caps.Cap, start: date) -> list[int]:
    assert cfg.alerts is not None
    ident = cap_id(cap)
    return [t for t in cfg.alerts.thresholds_for(cap.scope) if (ident, cap.period, start, t) not in _state.fired]


def on_settled(cfg: Config, reservation: Any, cost_micros: int) -> None:
    """After a request's settle: queue an exact check of the caps that may be near a threshold. Never raises."""
    settings = cfg.alerts
    if settings is None or not settings.destinations:
        return
    standings: list[spend_caps.Standing] = getattr(reservation, "standings", None) or []
    if not standings:
        return
    try:
        near: list[spend_caps.Cap] = []
        for standing in standings:
            cap = standing.cap
            if cap.cap_micros <= 0:
                continue
            start = periods.start(cap.period, standing.day)
            pending = _pending(cfg, cap, start)
            if not pending:
                continue
            key = (cap_id(cap), cap.period, start)
            projected = standing.used + max(0, cost_micros)
            if key in _state.near or projected * 100 >= (pending[0] - settings.near_percent) * cap.cap_micros:
                near.append(cap)
        if near:
            _enqueue(Job(cfg, tuple(near), standings[0].day))
    except Exception as exc:  # alerts must never break a request
        logs.error("budget alert check failed", error=f"{type(exc).__name__}: {exc}")


def _enqueue(job: Job) -> None:
    settings = job.cfg.alerts
    assert settings is not None
    with _state.lock:
        fresh = []
        for cap in job.caps:
            key = (cap_id(cap), cap.period, periods.start(cap.period, job.day))
            if key not in _state.queued:
                fresh.append(cap)
                _state.queued.add(key)
        if not fresh:
            return
        if _state.queue is None:
            _state.queue = queue.Queue(maxsize=settings.queue_size)
        if _state.thread is None or not _state.thread.is_alive():
            _state.thread = threading.Thread(target=_run, name="budget-alerts", daemon=True)
            _state.thread.start()
        try:
            _state.queue.put_nowait(Job(job.cfg, tuple(fresh), job.day))
        except queue.Full:
            for cap in fresh:
                _state.queued.discard((cap_id(cap), cap.period, periods.start(cap.period, job.day)))
            _state.dropped += 1
            logs.warning("budget alert queue full; check dropped (the next settle retries)", key="alerts.queue_size")


def _run() -> None:
    wait: float | None = None
    while True:
        q = _state.queue
        assert q is not None
        try:
            job: Job | None = q.get(timeout=wait)
        except queue.Empty:
            job = None
        with _state.lock:
            _state.busy = True
        cfg = job.cfg if job is not None else _last_cfg
        try:
            if job is not None:
                _remember_cfg(job.cfg)
                with _state.lock:
                    for cap in job.caps:
                        _state.queued.discard((cap_id(cap), cap.period, periods.start(cap.period, job.day)))
                evaluate(job.cfg, job.caps, job.day)
            if cfg is not None:
                db = store.get()
                while delivery.deliver_due(cfg, db):
                    pass
                due = delivery.seconds_until_due(db)
                wait = None if due is None else min(max(due, 0.05), IDLE_WAIT_SECONDS)
        except Exception as exc:
            logs.error("budget alert worker failed; retrying", error=f"{type(exc).__name__}: {exc}")
            wait = 1.0
        finally:
            with _state.lock:
                _state.busy = False


_last_cfg: Config | None = None


def _remember_cfg(cfg: Config) -> None:
    global _last_cfg
    _last_cfg = cfg


def evaluate(cfg: Config, caps: tuple[spend_caps.Cap, ...] | list[spend_caps.Cap], day: date) -> list[int]:
    """Read the caps' exact settled spend; fire (once, across instances) every threshold crossed. New event ids."""
    settings = cfg.alerts
    if settings is None:
        return []
    db = store.get()
    names = [d.name for d in settings.destinations]
    fired: list[int] = []
    with _state.lock:
        _state.evaluations += 1
    for standing in spend_caps.standings(db, list(caps), day):
        cap = standing.cap
        start = periods.start(cap.period, day)
        pending = _pending(cfg, cap, start)
        if not pending:
            continue
        ident = cap_id(cap)
        if standing.used * 100 >= (pending[0] - settings.near_percent) * cap.cap_micros:
            with _state.lock:
                _state.near.add((ident, cap.period, start))
        for threshold in pending:
            if standing.spent_micros * 100 < threshold * cap.cap_micros:
                break
            event_id = delivery.claim(
                db, ident, cap.scope, cap.scope_id, cap.key, cap.period, start, threshold,
                cap.cap_micros, standing.spent_micros, names,
            )  # fmt: skip
            with _state.lock:
                _state.fired.add((ident, cap.period, start, threshold))
            if event_id is not None:
                fired.append(event_id)
                audit.record(
                    "alert.fired",
                    actor="system",
                    target=f"alert_{event_id}",
                    detail={
                        "cap": ident,
                        "period": cap.period,
                        "period_start": start.isoformat(),
                        "threshold": threshold,
                        "cap_micros": cap.cap_micros,
                        "spent_micros": standing.spent_micros,
                        "destinations": names,
                    },
                    db=db,
                )
    return fired


def wait_idle(timeout: float = 30.0) -> bool:
    """Tests and shutdown: wait until the queue is empty, the worker idle and no delivery is due now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = _state.queue
        with _state.lock:
            idle = not _state.busy and (q is None or q.empty()) and not _state.queued
        if idle:
            try:
                due = delivery.seconds_until_due(store.get())
            except Exception:
                due = None
            if due is None:
                return True
        time.sleep(0.05)
    return False


def stats() -> dict[str, int]:
    """This instance's counters: exact evaluations run, checks dropped on a full queue, queued now."""
    with _state.lock:
        return {"evaluations": _state.evaluations, "dropped": _state.dropped, "queued": len(_state.queued)}


def reset() -> None:
    """Forget this instance's memory of fired and near caps (tests; a new config)."""
    with _state.lock:
        _state.fired.clear()
        _state.near.clear()
        _state.queued.clear()
        _state.evaluations = 0
