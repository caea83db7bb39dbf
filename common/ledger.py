"""Placeholder until the spend ledger lands: nothing is reserved, nothing is charged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from common.config import Config

if TYPE_CHECKING:
    from common.metering import RequestInfo, Usage


def reserve(cfg: Config, info: RequestInfo) -> tuple[Any, dict[str, str]]:
    return None, {}


def settle(cfg: Config, info: RequestInfo, reservation: Any, usage: Usage, status: int) -> int:
    """Record the request's usage; return its cost in micro-dollars."""
    return 0
