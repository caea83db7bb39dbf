"""The one interface between the inference proxy and what meters it.

The proxy calls `begin()` once before it contacts the upstream (spend
reservation: may refuse with 429) and `finish()` once after the upstream's
last byte (settle the real cost, record telemetry, flush). Nothing else in
the request path touches the ledger or telemetry, so there is one round trip
before the upstream call and one after, and none per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.alerts import engine as alerts
from common.config import Config
from common.core.usage import RequestInfo, Usage
from common.spend import reserve, settle
from common.telemetry import emit as telemetry


@dataclass(slots=True)
class Ticket:
    """The result of `begin()`: headers for the client and the reservation to settle."""

    info: RequestInfo
    headers: dict[str, str] = field(default_factory=dict)
    reservation: Any = None


def begin(cfg: Config, info: RequestInfo) -> Ticket:
    """Before proxying: reserve an estimate against every cap (raises GatewayError 429 at a cap)."""
    reservation, headers = reserve.reserve(cfg, info)
    return Ticket(info=info, headers=headers, reservation=reservation)


def finish(cfg: Config, ticket: Ticket, usage: Usage, status: int, first_byte_ms: float | None = None) -> None:
    """After the upstream's last byte: settle the real cost and record telemetry. Never raises."""
    cost_micros = settle.settle(cfg, ticket.info, ticket.reservation, usage, status)
    alerts.on_settled(cfg, ticket.reservation, cost_micros)  # in memory; near a threshold: queued, not awaited
    telemetry.record(cfg, ticket.info, usage, cost_micros, status, first_byte_ms)
