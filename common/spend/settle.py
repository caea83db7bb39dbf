"""After the upstream's last byte: price the request's real usage and record it.

`row()` turns one request into a `SettleRow` (defined beside its SQL in
`store`): the upstream's own usage figures priced at list price, the usage
row, the counters its cost goes to (the caller's, the org's and each group's,
shared keys on a random one of SHARDS rows), the holds to drop and the lease
whose hold shrinks by the cost (`spend.leases`). `settle()`
commits it through the group commit (`batcher.GROUP_COMMIT`); a settle the
database cannot take goes to the retry queue (`queue.PENDING`), so no usage
is lost while the database is away, and a queued settle makes the instance
watch for SIGTERM (`shutdown`), so the queue is flushed or spilled before it dies.

Admission learns only from complete answers: `reserve.observe` skips a status
of 400 and above, which is how a partial settle is marked (`proxy.relay`:
499 drain cut, 502 upstream dropped, 503 instance stopped, 504 upstream silent).
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING

from common.core import logs
from common.core.usage import MAX_TOKENS
from common.db import pool
from common.spend import batcher, caps, leases, queue, reserve, shutdown
from common.spend.reserve import Reservation
from common.spend.store import SettleRow

if TYPE_CHECKING:
    from common.config import Config
    from common.core.usage import RequestInfo, Usage

__all__ = ["SHARDS", "SWEEP_PROBABILITY", "SettleRow", "row", "settle"]

# Writes to shared keys (org, group pools) are spread over this many counter rows.
SHARDS = 16
SWEEP_PROBABILITY = 0.02  # settles that also sweep expired holds


def row(cfg: Config, info: RequestInfo, reservation: Reservation | None, usage: Usage, status: int) -> SettleRow:
    """The settle of one request (its cost is `cost_micros`)."""
    if reservation is None:
        reservation = Reservation.unheld()
    identity = info.identity
    groups = sorted({g.strip().lower() for g in identity.groups if g.strip()})
    counters = [(caps.user_key(identity.email), 0), (caps.ORG_KEY, random.randrange(SHARDS))]  # noqa: S311 (load spreading)
    counters += [(caps.group_key(g), random.randrange(SHARDS)) for g in groups]  # noqa: S311
    counters.sort()
    return SettleRow(
        reservation_key=reservation.key,
        request_id=info.request_id,
        at=reservation.at,
        day=reservation.day,
        user_email=identity.email.strip().lower(),
        user_sub=identity.sub,
        groups=tuple(groups),
        model=info.model,
        upstream=info.upstream,
        upstream_model=info.upstream_model,
        billing_group=info.billing_group,
        endpoint=info.endpoint,
        status=status,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_input_tokens,
        cache_write_5m_tokens=usage.cache_creation_5m_input_tokens,
        cache_write_1h_tokens=usage.cache_creation_1h_input_tokens,
        cost_micros=reserve.request_cost(cfg, info, usage) if info.endpoint == "messages" else 0,
        counters=tuple(counters),
        sweep=random.random() < SWEEP_PROBABILITY,  # noqa: S311
        client=info.client,
        session_id=identity.session_id,
        settings_check=info.settings_check,
        lease=reservation.lease.key if reservation.lease is not None else None,
    )


def settle(cfg: Config, info: RequestInfo, reservation: Reservation | None, usage: Usage, status: int) -> int:
    """Record the request's usage; return its cost in micro-dollars. Never raises."""
    if info.endpoint != "messages" and not (isinstance(reservation, Reservation) and reservation.held):
        return 0  # count_tokens is free and was never reserved: no round trip
    settled = row(cfg, info, reservation if isinstance(reservation, Reservation) else None, usage, status)
    if usage.clamped:
        logs.warning(
            "upstream usage figures out of range; billed clamped to [0, bound]",
            reported=usage.clamped,
            bound=MAX_TOKENS,
            model=info.model,
        )
    reserve.observe(cfg, info, usage, status)
    # The lease's local remainder is debited now, committed or queued: either way the cost
    # reaches the ledger, and this statement also carries the leases the instance is done with.
    held = reservation if isinstance(reservation, Reservation) else None
    lease = held.lease if held is not None else None
    book = lease.book if lease is not None else leases.LEASES
    if held is not None and lease is not None:
        # The lease's snapshot aged while this request ran: budget alerts decide from fresher figures.
        held.standings = book.settling(lease, held.caps, held.day)
    release = book.settled(lease, held.estimate_micros if held is not None else 0, settled.cost_micros)
    if held is not None:
        held.lease = None  # debited once, even if a second settle of it came
    if release:
        settled = dataclasses.replace(settled, release=release)
    try:
        db = pool.get()
        batcher.GROUP_COMMIT.settle(db, settled)
    except Exception as exc:
        queue.PENDING.add(settled, exc)
        shutdown.watch()
        return settled.cost_micros
    if queue.PENDING.size():
        queue.PENDING.flush(db, budget=50)
    return settled.cost_micros
