"""What one metered request is and what it used: `RequestInfo` and `Usage` (token counts)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from common.core.identity import Identity


@dataclass(slots=True)
class Usage:
    """Token counts as the upstream reported them (message_start/message_delta or `usage`)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    web_search_requests: int = 0  # server tool use, priced per request

    @property
    def cache_creation_input_tokens(self) -> int:
        return self.cache_creation_5m_input_tokens + self.cache_creation_1h_input_tokens

    def merge(self, usage: dict[str, Any]) -> None:
        """Take the latest figures of an upstream `usage` object (counts are cumulative)."""
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens"):
            value = usage.get(key)
            if isinstance(value, int):
                setattr(self, key, value)
        server_tools = usage.get("server_tool_use")
        if isinstance(server_tools, dict) and isinstance(server_tools.get("web_search_requests"), int):
            self.web_search_requests = server_tools["web_search_requests"]
        creation = usage.get("cache_creation")
        if isinstance(creation, dict):
            five = creation.get("ephemeral_5m_input_tokens")
            hour = creation.get("ephemeral_1h_input_tokens")
            if isinstance(five, int):
                self.cache_creation_5m_input_tokens = five
            if isinstance(hour, int):
                self.cache_creation_1h_input_tokens = hour
        elif isinstance(usage.get("cache_creation_input_tokens"), int):
            # Without the breakdown, a cache write is priced as the 5-minute kind.
            self.cache_creation_5m_input_tokens = usage["cache_creation_input_tokens"]
            self.cache_creation_1h_input_tokens = 0


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
