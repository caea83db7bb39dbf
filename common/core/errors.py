"""Errors that reach a client, in the envelopes of PROTOCOL.md.

Bearer endpoints answer in Anthropic's envelope
(`{"type":"error","error":{"type","message"}}`); OAuth endpoints answer
`{"error","error_description"}` with `Cache-Control: no-store`. Handlers raise
these exceptions; the web layer renders them, so no handler builds an error body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

# HTTP status -> Anthropic error type, for statuses that have one obvious type.
DEFAULT_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    411: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    501: "not_supported",
    502: "api_error",
    503: "api_error",
    504: "api_error",
    529: "overloaded_error",
}


class GatewayError(Exception):
    """An error for a bearer/admin endpoint, rendered in Anthropic's envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or DEFAULT_TYPES.get(status, "api_error")
        self.headers: dict[str, str] = dict(headers or {})
        self.details = dict(details) if details else None  # `error.details`, e.g. the 429's error_code
        if status == 401 or status == 501:
            self.headers.setdefault("x-should-retry", "false")

    def body(self) -> bytes:
        return envelope(self.error_type, self.message, self.details)


class OAuthError(Exception):
    """An RFC 6749 §5.2 error for the OAuth endpoints."""

    def __init__(
        self,
        error: str,
        description: str | None = None,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description or error)
        self.error = error
        self.description = description
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> bytes:
        payload = {"error": self.error}
        if self.description:
            payload["error_description"] = self.description
        return json.dumps(payload).encode()


def envelope(error_type: str, message: str, details: Mapping[str, str] | None = None) -> bytes:
    error: dict[str, object] = {"type": error_type, "message": message}
    if details:
        error["details"] = dict(details)
    return json.dumps({"type": "error", "error": error}).encode()
