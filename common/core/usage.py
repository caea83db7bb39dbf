"""What one metered request is and what it used: `RequestInfo` and `Usage` (token counts).

An upstream's figures are taken only as plausible counts: `merge` ignores
non-integers (and booleans), clamps a negative count to 0 and a count above
`MAX_TOKENS` (`MAX_SERVER_TOOL_USES`) to that bound, and notes each such
correction in `Usage.clamped` (the settle logs them: this module does no I/O),
so a broken or hostile upstream can neither credit a user nor write a number
the ledger refuses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from common.core.identity import Identity

# No request comes near these (contexts are at most ~1M tokens); a figure above
# them is the upstream's bug, billed at the bound rather than trusted.
MAX_TOKENS = 10_000_000
MAX_SERVER_TOOL_USES = 100_000


def plausible(value: Any, bound: int = MAX_TOKENS) -> int | None:
    """`value` as a usage count: None when it is not an integer, else clamped into [0, bound]."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return min(max(value, 0), bound)


@dataclass(slots=True)
class Usage:
    """Token counts as the upstream reported them (message_start/message_delta or `usage`)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    web_search_requests: int = 0  # server tool use, priced per request
    # "field=reported" for each upstream figure clamped into range (logged by the settle)
    clamped: list[str] = field(default_factory=list, compare=False, repr=False)

    @property
    def cache_creation_input_tokens(self) -> int:
        return self.cache_creation_5m_input_tokens + self.cache_creation_1h_input_tokens

    def merge(self, usage: dict[str, Any]) -> None:
        """Take the latest figures of an upstream `usage` object (counts are cumulative)."""
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens"):
            value = self._count(key, usage.get(key))
            if value is not None:
                setattr(self, key, value)
        server_tools = usage.get("server_tool_use")
        if isinstance(server_tools, dict):
            searches = self._count("web_search_requests", server_tools.get("web_search_requests"), MAX_SERVER_TOOL_USES)
            if searches is not None:
                self.web_search_requests = searches
        creation = usage.get("cache_creation")
        if isinstance(creation, dict):
            five = self._count("ephemeral_5m_input_tokens", creation.get("ephemeral_5m_input_tokens"))
            hour = self._count("ephemeral_1h_input_tokens", creation.get("ephemeral_1h_input_tokens"))
            if five is not None:
                self.cache_creation_5m_input_tokens = five
            if hour is not None:
                self.cache_creation_1h_input_tokens = hour
        else:
            total = self._count("cache_creation_input_tokens", usage.get("cache_creation_input_tokens"))
            if total is not None:
                # Without the breakdown, a cache write is priced as the 5-minute kind.
                self.cache_creation_5m_input_tokens = total
                self.cache_creation_1h_input_tokens = 0

    def _count(self, name: str, value: Any, bound: int = MAX_TOKENS) -> int | None:
        found = plausible(value, bound)
        if found is not None and found != value and len(self.clamped) < 16:
            self.clamped.append(f"{name}={value}")
        return found


@dataclass(slots=True)
class RequestInfo:
    """What the proxy knows about one metered request."""

    identity: Identity
    model: str  # the client's model id (canonical)
    upstream: str  # upstream name from gateway.yaml
    upstream_model: str  # the id sent upstream (e.g. a Vertex @-versioned id)
    endpoint: str = "messages"  # messages | count_tokens
    stream: bool = False
    billing_group: str | None = None  # from `tags` when admin.billing_group_tag is set
    max_tokens: int = 0
    input_bytes: int = 0
    request_id: str | None = None
    client: str | None = None  # the User-Agent's first product token (the fleet page)
    settings_check: str | None = None  # match | unknown | missing (policy.hints), never the header itself
    started: float = field(default_factory=time.monotonic)
