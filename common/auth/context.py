"""What every sign-in handler needs from a request: the form, who is asking, and audit."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from flask import Request, Response

from common.audit import records as audit
from common.config import Config
from common.core.errors import OAuthError
from common.http import NO_STORE, bodies, clientip, json_response

MAX_FORM_BYTES = 16 * 1024  # an OAuth form is a few hundred bytes
FORM_TYPE = "application/x-www-form-urlencoded"


def form(request: Request, max_bytes: int = MAX_FORM_BYTES) -> dict[str, str]:
    """The urlencoded body as a dict (last value wins); OAuth errors for what a client got wrong."""
    try:
        raw = bodies.read(request, max_bytes)
    except bodies.TooLarge:
        raise OAuthError("invalid_request", f"The form body must be at most {max_bytes} bytes.", status=413) from None
    except bodies.InvalidLength:
        raise OAuthError("invalid_request", "Content-Length is not a number.") from None
    except bodies.Truncated as exc:
        status = 408 if exc.timed_out else 400
        raise OAuthError("invalid_request", "The form body ended before its Content-Length.", status=status) from None
    mimetype = (request.mimetype or "").lower()
    if raw and mimetype == "application/json":
        return _json_form(raw)
    if raw and mimetype and mimetype != FORM_TYPE:
        raise OAuthError("invalid_request", f"Send the parameters as {FORM_TYPE}.")
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "The form body is not valid urlencoded UTF-8.") from None
    return _checked({k: v for k, v in pairs})


def _checked(params: dict[str, str]) -> dict[str, str]:
    """`params`, or 400 naming the first one with a control character (Postgres refuses NUL in text)."""
    for key, value in params.items():
        if any(ch < " " or ch == "\x7f" for ch in key + value):
            raise OAuthError("invalid_request", f"The parameter {key[:40]!r} holds a control character.")
    return params


def _json_form(raw: bytes) -> dict[str, str]:
    """Leniency for clients that post JSON: a flat object of strings reads like the form."""
    try:
        body = bodies.loads(raw)  # bounded depth, no lone surrogates
    except (ValueError, UnicodeDecodeError):
        raise OAuthError("invalid_request", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise OAuthError("invalid_request", f"Send the parameters as {FORM_TYPE}.")
    return _checked({str(k): v for k, v in body.items() if isinstance(v, str)})


def oauth_json(payload: dict[str, Any], status: int = 200) -> Response:
    return json_response(payload, status=status, headers=dict(NO_STORE))


class Caller:
    """The client address (X-Forwarded-For only from trusted proxies) and user agent."""

    def __init__(self, request: Request, cfg: Config) -> None:
        self.ip = clientip.client_ip(request, cfg)
        self.user_agent = (request.headers.get("User-Agent") or "")[:512] or None

    def audit(self, action: str, actor: str, target: str | None = None, **detail: Any) -> None:
        audit.record(
            action,
            actor=actor,
            target=target,
            client_ip=self.ip,
            user_agent=self.user_agent,
            detail=detail or None,
        )
