"""The one place that turns an upstream's failure into the client's error: error replies and transport errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from common.config import Upstream
from common.core import logs
from common.core.errors import GatewayError
from common.proxy import http1

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

# Replies that say "not here, not now" about one upstream rather than about the request:
# the next upstream of the model is tried (before the client has seen a byte).
# 429/529/5xx/408 are temporary; 401/403/404 are our own credential or
# configuration at that upstream (a key revoked, a project without access, a
# model not enabled in that region), which another upstream may well not share.
# 400/413/422 are the request's own fault: every upstream would refuse it.
_TEMPORARY = frozenset({408, 429, 529})
_CONFIGURATION = frozenset({401, 403, 404})


def fails_over(status: int) -> bool:
    """Whether an upstream error reply moves the request to the model's next upstream."""
    return status in _TEMPORARY or status in _CONFIGURATION or 500 <= status <= 599


def temporary(status: int) -> bool:
    """A failure that may pass by itself (rate limit, overload, 5xx, transport): the client may retry it."""
    return status in _TEMPORARY or 500 <= status <= 599


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


def transport_error(upstream: Upstream, exc: Exception) -> GatewayError:
    """The client's error when the upstream could not be reached or went silent."""
    logs.warning("upstream unreachable", upstream=upstream.name, error=http1.describe(exc))
    if isinstance(exc, http1.ConnectTimeout):
        return GatewayError(504, "The upstream did not accept the connection in time; retry shortly.", "api_error")
    if isinstance(exc, http1.ResponseTimeout):
        return GatewayError(504, "The upstream did not answer in time; retry shortly.", "api_error")
    return GatewayError(502, "The gateway could not reach the upstream; retry shortly.", "api_error")
