"""What every upstream shares: the pooled HTTP clients, header rules, and the request/route types.

One pooled HTTP/1.1 client per instance (`HTTP`, see `proxy.http1`: h11
framing on our own pool and sockets, ~150 µs of CPU per call where urllib3
costs ~300 µs) carries every upstream call over keep-alive connections;
urllib3 (`POOL`) only serves google-auth's token refreshes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3

from common.config import Upstream
from common.proxy import http1

# Connections kept per upstream host: one per concurrent request of the instance.
_POOL_SIZE = max(16, int(os.environ.get("THREADS", "0") or 0) * 2, 64)
HTTP = http1.Client(maxsize=_POOL_SIZE)
POOL = urllib3.PoolManager(num_pools=4, maxsize=4, block=False, retries=False)

# Request headers passed to the upstream (PROTOCOL.md "Headers to forward").
FORWARD_HEADERS = ("content-type", "accept", "accept-encoding", "anthropic-version", "anthropic-beta", "user-agent")
FORWARD_PREFIXES = ("x-stainless-",)

# Response headers never relayed to the client: hop-by-hop ones, the upstream's
# own rate-limit and identity headers, and those the serving stack sets itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_DROP_RESPONSE = _HOP_BY_HOP | {
    "request-id",
    "anthropic-organization-id",
    "content-length",  # recomputed (or absent on a stream) by the serving stack
    "date",
    "server",
    "alt-svc",
    "via",
}
_DROP_RESPONSE_PREFIXES = ("anthropic-ratelimit-", "x-goog-", "x-vertex-")

# Encodings we can decode to read the usage of a reply; others are not offered upstream.
_DECODABLE = ("gzip", "deflate", "identity")


def forward_headers(incoming: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The client's headers the upstream may see (never Authorization or x-api-key)."""
    out: dict[str, str] = {}
    for name, value in incoming:
        lower = name.lower()
        if lower in FORWARD_HEADERS or lower.startswith(FORWARD_PREFIXES):
            if lower == "accept-encoding":
                value = _decodable_encodings(value)
                if not value:
                    continue
            out[lower] = value
    return out


def _decodable_encodings(value: str) -> str:
    kept = [part.strip() for part in value.split(",") if part.split(";")[0].strip().lower() in _DECODABLE]
    return ", ".join(kept)


def response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream's response headers the client may see."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        if lower in _DROP_RESPONSE or lower.startswith(_DROP_RESPONSE_PREFIXES):
            continue
        out.append((name, value))
    return out


@dataclass(frozen=True, slots=True)
class Prepared:
    """One upstream HTTP request, ready to send."""

    url: str
    body: bytes
    headers: dict[str, str]


class Client(Protocol):
    """What inference needs from a provider."""

    upstream: Upstream

    def messages(
        self, model: str, body: dict[str, Any], stream: bool, headers: dict[str, str], query: str
    ) -> Prepared: ...

    def count_tokens(self, model: str, body: dict[str, Any], headers: dict[str, str], query: str) -> Prepared: ...

    def auth_headers(self) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class Route:
    upstream: Upstream
    client: Client
    upstream_model: str


def strip_suffix(model_id: str) -> str:
    """The id as sent upstream: trimmed, without a `[1m]`-style client suffix."""
    text = model_id.strip()
    if text.endswith("]") and "[" in text:
        text = text[: text.rindex("[")]
    return text
