"""Per-instance circuit breakers, one per upstream: stop sending to an upstream that keeps failing.

Closed: every request may go. `upstreams[].circuit_breaker.failures`
consecutive failures (a reply or transport error that fails over, see
`errors.fails_over`) open it: for `cooldown_seconds` the upstream is tried
only when nothing else is left. After the cool-down it is half-open: one
request probes it (concurrent ones go elsewhere); the probe's success closes
the breaker, its failure opens it for another cool-down. State is per
instance and in memory: a new instance (or a changed config entry for the
upstream) starts closed, which costs at most `failures` failed attempts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from common.config import Upstream
from common.core import logs


@dataclass(slots=True)
class _State:
    upstream: Upstream  # the config entry this state is for; a changed entry starts afresh
    failures: int = 0  # consecutive
    opened_at: float | None = None  # monotonic; None = closed
    probing: bool = False  # a half-open probe is in flight


class Breakers:
    """The breakers of this instance, keyed by upstream name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def _state(self, upstream: Upstream) -> _State:
        state = self._states.get(upstream.name)
        if state is None or not (state.upstream is upstream or state.upstream == upstream):
            state = _State(upstream)
            self._states[upstream.name] = state
        return state

    def available(self, upstream: Upstream, now: float | None = None) -> bool:
        """Closed, or open with its cool-down over (a probe may go): the order `routing.routes` tries first."""
        state = self._states.get(upstream.name)
        if state is None or state.opened_at is None or state.upstream != upstream:
            return True
        now = time.monotonic() if now is None else now
        return now >= state.opened_at + upstream.circuit_breaker.cooldown_seconds and not state.probing

    def acquire(self, upstream: Upstream, force: bool = False) -> bool:
        """May this request try `upstream` now? Claims the half-open probe; `force` (nothing else left) always may."""
        with self._lock:
            state = self._state(upstream)
            if state.opened_at is None:
                return True
            cooled = time.monotonic() >= state.opened_at + upstream.circuit_breaker.cooldown_seconds
            if cooled and not state.probing:
                state.probing = True
                return True
            return force

    def succeeded(self, upstream: Upstream) -> None:
        with self._lock:
            state = self._state(upstream)
            was_open = state.opened_at is not None
            state.failures = 0
            state.opened_at = None
            state.probing = False
        if was_open:
            logs.info("upstream circuit closed", upstream=upstream.name)

    def failed(self, upstream: Upstream, reason: str) -> None:
        settings = upstream.circuit_breaker
        with self._lock:
            state = self._state(upstream)
            state.failures += 1
            reopen = state.opened_at is not None  # a probe (or a forced try) failed: another cool-down
            opened = reopen or state.failures >= settings.failures
            if opened:
                state.opened_at = time.monotonic()
            state.probing = False
            failures = state.failures
        if opened and not reopen:
            logs.warning(
                "upstream circuit opened",
                upstream=upstream.name,
                failures=failures,
                reason=reason,
                cooldown_seconds=settings.cooldown_seconds,
            )

    def is_open(self, upstream: Upstream) -> bool:
        """Open (cooling down or half-open): for tests and operators' checks."""
        state = self._states.get(upstream.name)
        return state is not None and state.opened_at is not None

    def reset(self) -> None:
        with self._lock:
            self._states.clear()


BREAKERS = Breakers()
