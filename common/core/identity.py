"""Who is calling: the verified identity every policy, spend and telemetry decision reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller: identity from a session JWT (or an admin key)."""

    sub: str
    email: str
    groups: tuple[str, ...]
    session_id: str | None = None
    jti: str | None = None
    expires_at: int | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
