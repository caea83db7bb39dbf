"""Budget leases: a capped caller far from every cap is admitted by this instance with no round trip.

When every cap of a caller has room to spare, the reserve statement
(`store.reserve`) holds a *lease* instead of one request's expected cost: up
to `enforcement.lease_requests` expected costs, at most
`lease_headroom_percent` of each cap's room left, and only while settled +
held + the lease stays at or below `lease_below_percent` of every cap (else
it holds the request alone, as before). The lease is an ordinary row set of
`spend_holds` under its own uuid, so every other instance counts it.

For `lease_seconds` after, this instance admits the caller's next requests
(the same caps, the same UTC day) against what is left of it: the lease's
amount less the cost its requests settled and the expected cost of those
still in flight. Each of those requests settles with the lease's id: the
settle statement moves its cost from the lease's hold to the counters
(migration 013), so spent + held stays exact. A lease that cannot cover the
next request, or whose window ended, is retired; the next reserve asks for a
new one. A lease with nothing in flight is also retired once the latest
reserve statement of this instance for those caps saw one of them past the
far line: near a cap, an idle remainder is headroom another instance may
need. A retired lease's hold is dropped (released) by the first statement of
this instance once none of its requests is in flight and no settle is
queued: the settle of its last request, or any later reserve or settle
(`releases()`), or at shutdown (`release_all`). An instance that dies leaves it to expire
with `enforcement.reservation_ttl_seconds`, like any request's hold.

Standings (the `anthropic-ratelimit-unified-*` headers, budget alerts) of a
request admitted here are the lease's snapshot (what its reserve saw) plus
what its requests settled since, and the holds of those still in flight; or,
when fuller, what the latest reserve statement of this instance for the same
caps read (`saw`). Its settle takes them again (`settling`), so a crossing of
an alert threshold made by requests admitted since is seen by budget alerts.

Lifetime: one book per process (`LEASES`), made at import, bound to one
database (`bind`: another database forgets every lease); tests make more to
play several instances against one database.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from common.spend import queue
from common.spend.caps import Cap, Standing

if TYPE_CHECKING:
    from common.config import Config

__all__ = ["LEASES", "Lease", "LeaseBook", "Signature", "Terms", "signature", "terms"]

# The schema's defaults (common/config/schema.py, Enforcement), for a config without `enforcement`.
DEFAULT_REQUESTS = 8
DEFAULT_HEADROOM_PERCENT = 5
DEFAULT_BELOW_PERCENT = 50
DEFAULT_SECONDS = 30.0
SCAN_SECONDS = 1.0  # idle leases of other callers are looked for at most this often
SEEN_MAX = 10_000  # signatures whose latest reserve figures are kept

# (day, ((key, period, cap), ...)): a lease serves requests checked against exactly these caps.
Signature = tuple[date, tuple[tuple[str, str, int], ...]]


def signature(applicable: Sequence[Cap], day: date) -> Signature:
    return day, tuple((c.key, c.period, c.cap_micros) for c in applicable)


@dataclass(frozen=True, slots=True)
class Terms:
    requests: int  # 0: no leases
    headroom_percent: int
    below_percent: int
    seconds: float


def terms(cfg: Config) -> Terms:
    e = cfg.enforcement
    if e is None:
        return Terms(DEFAULT_REQUESTS, DEFAULT_HEADROOM_PERCENT, DEFAULT_BELOW_PERCENT, DEFAULT_SECONDS)
    return Terms(e.lease_requests, e.lease_headroom_percent, e.lease_below_percent, e.lease_seconds)


@dataclass(slots=True, eq=False)
class Lease:
    key: str  # uuid: its holds' reservation_id
    signature: Signature
    amount: int  # micro-dollars held on each of the caps' keys
    until: float  # book clock: new requests are admitted against it until then
    snapshot: tuple[tuple[int, int], ...]  # (settled, held) per cap, as the reserve that took it saw them
    book: LeaseBook = field(repr=False)
    settled: int = 0  # cost of its requests settled since (committed or queued)
    inflight: int = 0  # expected cost of its requests admitted and not settled yet
    requests: int = 0  # how many of those
    retired: bool = False
    below_percent: int = 100  # the far line it was taken under (Terms.below_percent)

    @property
    def remaining(self) -> int:
        return self.amount - self.settled - self.inflight

    def standings(
        self, applicable: Sequence[Cap], day: date, seen: Sequence[tuple[int, int]] | None = None
    ) -> list[Standing]:
        """Each cap as its reserve saw it, plus this lease's spend since and its other requests in flight;
        or, when fuller, as a later reserve statement of this instance saw it (`seen`)."""
        states = []
        for i, (cap, (spent, held)) in enumerate(zip(applicable, self.snapshot, strict=True)):
            spent, held = spent + self.settled, held + self.inflight
            if seen is not None and sum(seen[i]) > spent + held:
                spent, held = seen[i]
            states.append(Standing(cap, spent, held, day))
        return states


class LeaseBook:
    """This instance's leases: one current lease per signature, and the retired ones still to release.

    Every method takes the book's lock briefly and does no I/O: the statements
    that take and release leases are the reserve's and the settle's own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._current: dict[Signature, Lease] = {}
        self._asking: set[Signature] = set()
        self._release: list[str] = []
        self._owner: object | None = None
        self._scanned = -math.inf
        self._closed = False
        # The latest (settled, held) per cap a reserve statement of this instance read, per signature:
        # a lease's snapshot ages, and budget alerts must see a crossing its requests' settles make.
        self._seen: dict[Signature, tuple[tuple[int, int], ...]] = {}

    def bind(self, database: object) -> None:
        """Leases are rows of one database (`database`: its settings, compared by value; a new pool
        on the same settings keeps them): another database (a test's, a config moving) forgets them."""
        if self._owner == database:
            return
        with self._lock:
            if self._owner != database:
                self._current.clear()
                self._asking.clear()
                self._release.clear()
                self._seen.clear()
                self._owner = database

    def admit(self, sig: Signature, estimate: int, applicable: Sequence[Cap]) -> tuple[Lease, list[Standing]] | None:
        """Admit one request of `estimate` against the current lease of `sig`, with its standings; None: ask the DB."""
        now = self.clock()
        with self._lock:
            lease = self._current.get(sig)
            if lease is None or self._closed:
                return None
            if now >= lease.until or lease.remaining < estimate:
                self._retire(lease)
                return None
            states = lease.standings(applicable, sig[0], self._seen.get(sig))
            lease.inflight += estimate
            lease.requests += 1
            return lease, states

    def saw(self, sig: Signature, figures: Sequence[tuple[int, int]]) -> None:
        """A reserve statement read these (settled, held) for the caps of `sig`."""
        with self._lock:
            if len(self._seen) >= SEEN_MAX and sig not in self._seen:
                self._seen.clear()  # a bound, not a cache policy: the next reserve of each caller refills it
            self._seen[sig] = tuple(figures)
            lease = self._current.get(sig)
            if lease is not None and lease.requests == 0 and self._past_far_line(lease):
                self._retire(lease)  # idle near a cap: released by the next statement (this request's settle)

    def settling(self, lease: Lease, applicable: Sequence[Cap], day: date) -> list[Standing]:
        """The standings a request of `lease` settles with (before its own cost): as fresh as this instance knows."""
        with self._lock:
            return lease.standings(applicable, day, self._seen.get(lease.signature))

    def ask(self, sig: Signature) -> bool:
        """May this reserve ask for a lease of `sig`? One at a time per signature: the others hold alone."""
        with self._lock:
            if self._closed or sig in self._asking:
                return False
            self._asking.add(sig)
            return True

    def granted(
        self,
        sig: Signature,
        key: str,
        amount: int,
        snapshot: Sequence[tuple[int, int]],
        estimate: int,
        seconds: float,
        below_percent: int = 100,
    ) -> Lease:
        """The reserve got lease `key`; its own request is the lease's first."""
        lease = Lease(
            key,
            sig,
            amount,
            self.clock() + seconds,
            tuple(snapshot),
            self,
            inflight=estimate,
            requests=1,
            below_percent=below_percent,
        )
        with self._lock:
            self._asking.discard(sig)
            old = self._current.get(sig)
            if old is not None:
                self._retire(old)
            self._current[sig] = lease
        return lease

    def denied(self, sig: Signature) -> None:
        """The reserve asked for a lease of `sig` and got none (near a cap, or the database failed)."""
        with self._lock:
            self._asking.discard(sig)

    def settled(self, lease: Lease | None, estimate: int, cost: int) -> tuple[str, ...]:
        """A request settled (committed or queued): debit its lease; the leases the settle statement releases."""
        if lease is not None:
            with self._lock:
                lease.inflight -= estimate
                lease.settled += max(0, cost)
                lease.requests -= 1
                if lease.requests == 0 and not lease.retired and self._past_far_line(lease):
                    # Idle, and the caller is no longer far from a cap as this instance last saw it:
                    # its remainder is held headroom another instance may need, so give it back now.
                    self._retire(lease)
                elif lease.retired and lease.requests == 0:
                    self._release.append(lease.key)
        return self.releases()

    def releases(self) -> tuple[str, ...]:
        """Take the leases to release now (the caller's statement drops their holds): retired and idle.

        None while a settle is queued: a released lease no longer holds what that settle will add.
        """
        now = self.clock()
        if not self._release and now - self._scanned < SCAN_SECONDS:
            return ()
        with self._lock:
            if now - self._scanned >= SCAN_SECONDS:
                self._scanned = now
                for lease in [lease for lease in self._current.values() if now >= lease.until]:
                    self._retire(lease)
            if not self._release or queue.pending():
                return ()
            taken = tuple(self._release)
            self._release.clear()
            return taken

    def put_back(self, keys: Sequence[str]) -> None:
        """The statement carrying these releases failed: release them with a later one."""
        if keys:
            with self._lock:
                self._release.extend(keys)

    def release_all(self) -> tuple[str, ...]:
        """The instance is stopping: no more leases; every lease with nothing in flight is to be released now."""
        with self._lock:
            self._closed = True
            for lease in list(self._current.values()):
                self._retire(lease)
            taken = tuple(self._release)
            self._release.clear()
            return taken

    def current(self, sig: Signature) -> Lease | None:
        with self._lock:
            return self._current.get(sig)

    def clear(self) -> None:
        """Forget every lease and reopen (tests; a stop that did not happen)."""
        with self._lock:
            self._current.clear()
            self._asking.clear()
            self._release.clear()
            self._seen.clear()
            self._owner = None
            self._scanned = -math.inf
            self._closed = False

    def _past_far_line(self, lease: Lease) -> bool:
        # Lock held. The latest reserve figures of its caps put one past the line leases are taken under.
        seen = self._seen.get(lease.signature)
        if seen is None:
            return False
        return any(
            (spent + held) * 100 > cap * lease.below_percent
            for (spent, held), (_, _, cap) in zip(seen, lease.signature[1], strict=True)
        )

    def _retire(self, lease: Lease) -> None:
        # Lock held. Idle: release at once; else the settle of its last request releases it.
        if self._current.get(lease.signature) is lease:
            del self._current[lease.signature]
        if lease.retired:
            return
        lease.retired = True
        if lease.requests == 0:
            self._release.append(lease.key)


LEASES = LeaseBook()
