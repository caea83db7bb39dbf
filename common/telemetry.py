"""Placeholder until telemetry lands: nothing is recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.config import Config

if TYPE_CHECKING:
    from common.metering import RequestInfo, Usage


def record(
    cfg: Config, info: RequestInfo, usage: Usage, cost_micros: int, status: int, first_byte_ms: float | None
) -> None:
    return None
