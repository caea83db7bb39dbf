"""Where a request's CPU goes: thread CPU time per call of the request path's functions.

py-spy's samples give shares (and with `--gil` count a thread blocked in
recv() as busy); this gives CPU-milliseconds. `install()` (run by
`bench/probe_site/sitecustomize.py` in a gateway started only for this
measurement) wraps each function of `TARGETS` as its module is imported, so
every call adds its thread's CPU time (`time.thread_time`: user + system) to a
per-function total. Nested calls are inclusive: `StreamRelay.__next__`
includes the reads it makes. The wrappers cost two clock reads per call, so
the probed gateway is not the measured one: `bench --attribute` starts it apart.

Control is a file (`BENCH_PROBE_CTL`) polled by a thread in each process:
`reset` zeroes the totals, `dump PATH` writes them, with the process's own
CPU time since the reset, to PATH.<pid>.json.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

# module -> (class or "" for a module function, attribute, row label); the label's
# first word is its phase: web (gunicorn, Flask), handler (our steps), stream, settle.
TARGETS: dict[str, list[tuple[str, str, str]]] = {
    "gunicorn.workers.gthread": [
        ("ThreadWorker", "handle", "web: gunicorn handle (the whole request, in its thread)"),
    ],
    "gunicorn.http.parser": [("Parser", "__next__", "web: gunicorn parses the request head")],
    "gunicorn.http.wsgi": [("Response", "write", "web: gunicorn writes a body item (chunked)")],
    "flask.app": [("Flask", "wsgi_app", "web: Flask + functions-framework until the handler returns")],
    "common.http.router": [("App", "__call__", "handler: App (router, request id, access log)")],
    "common.auth.sessions": [("", "authenticate", "handler: authenticate (JWT)")],
    "common.proxy.steps": [
        ("", "check_body", "handler: check_body (read + top-level decode of the body)"),
        ("", "apply_policy", "handler: apply_policy"),
        ("", "route", "handler: route"),
        ("", "reserve", "handler: reserve (spend: caps, one Postgres round trip)"),
        ("", "send", "handler: send (upstream request, wait for its head)"),
        ("", "relay", "handler: relay setup"),
    ],
    "common.proxy.relay": [
        ("StreamRelay", "__next__", "stream: StreamRelay item (read, decode, scan)"),
        ("StreamRelay", "_settle_locked", "settle: metering.finish (spend + telemetry)"),
    ],
    "common.proxy.http1": [("_Dechunker", "take", "stream: chunked decoding")],
    "common.proxy.sse": [("UsageScanner", "feed", "stream: usage scan")],
    "common.spend.settle": [("", "settle", "settle: spend.settle")],
    "common.telemetry.emit": [("", "record", "settle: telemetry.record")],
}

_totals: dict[str, list[float]] = {}
_watcher: list[int] = []  # the pid whose watcher thread runs (a forked worker starts its own)
_since: list[float] = [0.0]


def _wrap(owner: Any, attribute: str, label: str) -> None:
    inner: Callable[..., Any] = getattr(owner, attribute)
    clock = time.thread_time

    def timed(*args: Any, **kwargs: Any) -> Any:
        if not _watcher or _watcher[0] != os.getpid():
            _start_watcher()
        started = clock()
        try:
            return inner(*args, **kwargs)
        finally:
            row = _totals.get(label)
            if row is None:
                row = _totals[label] = [0, 0.0]
            row[0] += 1
            row[1] += clock() - started

    timed.__wrapped__ = inner  # type: ignore[attr-defined]
    setattr(owner, attribute, timed)


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def _start_watcher() -> None:
    _watcher[:] = [os.getpid()]
    threading.Thread(target=_watch, name="bench-probe", daemon=True).start()


def _watch() -> None:
    path = os.environ.get("BENCH_PROBE_CTL", "")
    done = ""
    while path:
        time.sleep(0.05)
        try:
            with open(path) as f:
                command = f.read().strip()
        except OSError:
            continue
        if command == done:
            continue
        done = command
        if command.startswith("reset"):
            _totals.clear()
            _since[0] = _cpu()
        elif command.startswith("dump "):
            rows = {label: list(row) for label, row in _totals.items()}
            out = {"rows": rows, "process_cpu_s": _cpu() - _since[0]}
            with open(f"{command[5:]}.{os.getpid()}.json", "w") as f:
                json.dump(out, f)


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps `TARGETS`' functions right after their module is executed."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if name not in TARGETS:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            for owner_name, attribute, label in TARGETS[name]:
                _wrap(getattr(module, owner_name) if owner_name else module, attribute, label)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    sys.meta_path.insert(0, _Finder())


def table(dumps: list[dict[str, Any]], requests: int) -> dict[str, Any]:
    """The dumps of one measurement (one per process) as per-request figures, by label."""
    rows: dict[str, list[float]] = {}
    cpu = 0.0
    for dump in dumps:
        cpu += float(dump.get("process_cpu_s", 0.0))
        for label, (calls, seconds) in dump.get("rows", {}).items():
            row = rows.setdefault(label, [0, 0.0])
            row[0] += calls
            row[1] += seconds
    n = max(requests, 1)
    return {
        "requests": requests,
        "process_cpu_ms_per_request": round(cpu * 1000 / n, 3),
        "rows": [
            {
                "label": label,
                "calls_per_request": round(calls / n, 2),
                "ms_per_request": round(seconds * 1000 / n, 3),
                "us_per_call": round(seconds * 1e6 / max(calls, 1), 1),
            }
            for label, (calls, seconds) in sorted(rows.items())
        ],
    }
