"""Model upstreams: routing a model to an upstream, the pooled HTTP client, header rules, error mapping.

One pooled HTTP/1.1 client per instance (`HTTP`, see `http1.py`: h11 framing
on our own pool and sockets, ~150 µs of CPU per call where urllib3 costs
~300 µs) carries every upstream call over keep-alive connections; urllib3
(`POOL`) only serves google-auth's token refreshes. Each configured upstream
gets one client object per instance (`client_for`), rebuilt only when its
config entry changes.
`vertex.py` and `anthropic.py` know their provider's URL, body and credential;
everything they share lives here.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3

from common import logs, models
from common.config import Config, Upstream
from common.errors import GatewayError
from common.upstreams import http1

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


_clients: dict[str, tuple[Upstream, Client]] = {}
_clients_lock = threading.Lock()


def client_for(upstream: Upstream) -> Client:
    """The per-instance client of an upstream (rebuilt when its config entry changes)."""
    hit = _clients.get(upstream.name)
    if hit is not None and (hit[0] is upstream or hit[0] == upstream):
        return hit[1]
    with _clients_lock:
        client: Client
        if upstream.provider == "vertex":
            from common.upstreams.vertex import VertexClient

            client = VertexClient(upstream)
        elif upstream.provider == "anthropic":
            from common.upstreams.anthropic import AnthropicClient

            client = AnthropicClient(upstream)
        else:  # config checks refuse other providers; this is defence in depth
            raise GatewayError(500, f"Upstream {upstream.name!r} has an unknown provider.", "api_error")
        _clients[upstream.name] = (upstream, client)
        return client


def strip_suffix(model_id: str) -> str:
    """The id as sent upstream: trimmed, without a `[1m]`-style client suffix."""
    text = model_id.strip()
    if text.endswith("]") and "[" in text:
        text = text[: text.rindex("[")]
    return text


_route_cache: dict[tuple[int, str], tuple[Config, Upstream, str] | None] = {}
_MISSING: Any = object()


def route(cfg: Config, model_id: str) -> Route:
    """The first upstream that serves `model_id`, and the id to send it."""
    key = (id(cfg), model_id)
    hit = _route_cache.get(key, _MISSING)
    if hit is _MISSING or (hit is not None and hit[0] is not cfg):
        hit = _find_route(cfg, model_id)
        if len(_route_cache) > 4096:
            _route_cache.clear()
        _route_cache[key] = hit
    if hit is None:
        served = sorted({m.id for m in cfg.models})
        hint = f" Configured models: {', '.join(served)}." if served else ""
        raise GatewayError(400, f"No upstream of this gateway serves the model '{model_id}'.{hint}")
    _, upstream, upstream_model = hit
    return Route(upstream, client_for(upstream), upstream_model)


def _find_route(cfg: Config, model_id: str) -> tuple[Config, Upstream, str] | None:
    configured = models.find(cfg, model_id)
    canonical = models.canonical(model_id)
    for upstream in cfg.upstreams:
        if configured is not None and upstream.name in configured.upstream_model:
            return cfg, upstream, configured.upstream_model[upstream.name]
        if any(models.entry_matches(pattern, canonical) for pattern in upstream.models):
            return cfg, upstream, strip_suffix(model_id)
    return None


# --- upstream errors -----------------------------------------------------------------

_GENERIC = {
    400: "The upstream rejected the request.",
    401: "The gateway could not authenticate to the upstream; an operator must check its credentials.",
    403: "The gateway is not permitted to use this model on the upstream; an operator must check its access.",
    404: "The model is not available on the upstream.",
    408: "The upstream timed out.",
    413: "The request is too large for the upstream.",
    429: "The upstream is rate limiting requests; retry shortly.",
    500: "The upstream had an internal error.",
    503: "The upstream is unavailable; retry shortly.",
    504: "The upstream timed out.",
    529: "The upstream is overloaded; retry shortly.",
}

_VERTEX_SIZE_HINTS = ("request payload size exceeds", "payload size exceeds", "request is too large", "too large")


def error_from_upstream(upstream: Upstream, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    """The client's error for an upstream error reply (details go to the log only).

    Anthropic-envelope 400/413 messages are the model's own words about the
    request (`prompt is too long: …`) and are relayed; everything else may name
    projects or accounts and becomes a generic message keeping `error.type`.
    """
    parsed: Any = None
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    anthropic_error = (
        parsed.get("error") if isinstance(parsed, dict) and parsed.get("type") == "error" else None
    )  # {"type":"error","error":{"type","message"}}
    google_error = parsed.get("error") if isinstance(parsed, dict) and anthropic_error is None else None
    logs.warning(
        "upstream error",
        upstream=upstream.name,
        provider=upstream.provider,
        upstream_status=status,
        detail=body[:1000].decode("utf-8", "replace"),
    )
    relay_headers: dict[str, str] = {}
    retry_after = headers.get("retry-after")
    if retry_after:
        relay_headers["retry-after"] = retry_after

    if isinstance(anthropic_error, dict):
        error_type = str(anthropic_error.get("type") or "api_error")
        message = anthropic_error.get("message")
        if status in (400, 413) and isinstance(message, str):
            return GatewayError(status, message, error_type, relay_headers)
    else:
        error_type = ""
    if isinstance(google_error, dict) and status == 400:
        message = str(google_error.get("message") or "").lower()
        if any(hint in message for hint in _VERTEX_SIZE_HINTS):
            return GatewayError(400, "Input is too long.", "invalid_request_error")
    if status == 529 or error_type == "overloaded_error":
        return GatewayError(529, _GENERIC[529], "overloaded_error", relay_headers)
    if status in (401, 403):
        # Our credential at the upstream, not the caller's: never a 401 that
        # would make Claude Code sign in again.
        return GatewayError(502, _GENERIC[status], "api_error")
    if status == 429:
        return GatewayError(429, _GENERIC[429], "rate_limit_error", relay_headers)
    message = _GENERIC.get(status) or (
        "The upstream rejected the request." if status < 500 else "The upstream had an error."
    )
    if not error_type:
        error_type = {400: "invalid_request_error", 404: "not_found_error", 413: "request_too_large"}.get(
            status, "api_error"
        )
    return GatewayError(status if 400 <= status <= 599 else 502, message, error_type, relay_headers)
