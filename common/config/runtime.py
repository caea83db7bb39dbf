"""One runtime snapshot per accepted config version.

Everything derived from a config (upstream routes, the price book, the managed
policies served, per-request settings) is built at most once per version and
dropped with it: `runtime_of(cfg).derive(builder)` memoises `builder(cfg)` on
that version's `Runtime`. A reload makes a new `Config` object, hence a new
`Runtime`, so nothing derived can go stale. The registry is keyed by object
identity and keeps the newest few versions (requests in flight may still hold
the previous one).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from common.config.schema import Config

T = TypeVar("T")

KEEP_VERSIONS = 8


class Runtime:
    """What one config version is, and what has been derived from it so far."""

    __slots__ = ("_derived", "_lock", "_locks", "config")

    def __init__(self, config: Config) -> None:
        self.config = config
        self._derived: dict[Callable[[Config], Any], Any] = {}
        self._lock = threading.Lock()
        self._locks: dict[Callable[[Config], Any], threading.Lock] = {}

    def derive(self, builder: Callable[[Config], T]) -> T:
        """`builder(config)`, built once for this version (builders must be module-level functions)."""
        try:
            return self._derived[builder]  # type: ignore[no-any-return]
        except KeyError:
            pass
        # One lock per builder: a builder may derive other things of the same version
        # (and a slow one must not hold up the others), but each is built once.
        with self._lock:
            lock = self._locks.setdefault(builder, threading.Lock())
        with lock:
            if builder not in self._derived:
                self._derived[builder] = builder(self.config)
            return self._derived[builder]  # type: ignore[no-any-return]


_runtimes: OrderedDict[int, Runtime] = OrderedDict()
_lock = threading.Lock()


def runtime_of(cfg: Config) -> Runtime:
    """The one `Runtime` of this config object."""
    found = _runtimes.get(id(cfg))
    if found is not None and found.config is cfg:
        return found
    with _lock:
        found = _runtimes.get(id(cfg))
        if found is None or found.config is not cfg:
            found = Runtime(cfg)
            _runtimes[id(cfg)] = found
            while len(_runtimes) > KEEP_VERSIONS:
                _runtimes.popitem(last=False)
        return found


def derive(cfg: Config, builder: Callable[[Config], T]) -> T:
    """Shorthand for `runtime_of(cfg).derive(builder)`."""
    return runtime_of(cfg).derive(builder)
