"""Request bodies read within a bound: one reader, one decompressor, and the JSON-object reader.

`read()` never holds more than `limit + 1` bytes, whatever the headers claim,
and `decompress()` never inflates past `limit` (a small gzip must not become
gigabytes). Both raise a `BodyError` subclass saying which rule the body broke;
each endpoint renders it in its own shape (Anthropic envelope, OAuth error, or
a dropped telemetry export), so the messages below are for logs and defaults.
`read_json_body()` is the bearer and admin endpoints' reading of a JSON object.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

from flask import Request

from common.core.errors import GatewayError


class BodyError(Exception):
    """The body cannot be read under the endpoint's rules."""


class LengthRequired(BodyError):
    """A chunked body without Content-Length, where the endpoint requires one."""


class InvalidLength(BodyError):
    """Content-Length is not a non-negative integer."""


class TooLarge(BodyError):
    """Over `limit` bytes: as declared (`declared` is the Content-Length), as sent, or once inflated."""

    def __init__(self, limit: int, declared: int | None = None, inflated: bool = False) -> None:
        super().__init__(f"body over {limit} bytes" + (f" (Content-Length {declared})" if declared is not None else ""))
        self.limit = limit
        self.declared = declared
        self.inflated = inflated


class UnsupportedEncoding(BodyError):
    """A Content-Encoding other than identity, gzip or deflate."""


class CorruptEncoding(BodyError):
    """The body does not decompress."""


def declared_length(request: Request) -> int | None:
    """The Content-Length header as a number, None when absent."""
    header = request.headers.get("Content-Length")
    if header is None:
        return None
    header = header.strip()
    if not header.isascii() or not header.isdigit():
        raise InvalidLength("Content-Length is not a number")
    return int(header)


def read(request: Request, limit: int, *, length_required: bool = False) -> bytes:
    """At most `limit` bytes of body; `TooLarge` beyond, checked on the header first and then on the bytes."""
    length = declared_length(request)
    codings = request.headers.get("Transfer-Encoding", "").lower().split(",")
    if length is None and length_required and "chunked" in (c.strip() for c in codings):
        raise LengthRequired("a Content-Length header is required; chunked request bodies are not accepted")
    if length is not None and length > limit:
        raise TooLarge(limit, declared=length)
    stream = request.stream
    parts: list[bytes] = []
    size = 0
    while size <= limit:  # a stream may return short reads: loop until its end or past the limit
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if size > limit:
        raise TooLarge(limit)
    return b"".join(parts)


def decompress(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """`raw` decoded per its Content-Encoding (identity, gzip, deflate), at most `limit` bytes once inflated."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return raw
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedEncoding(f"unsupported Content-Encoding {encoding!r}")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, auto-detected
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise CorruptEncoding(f"cannot decompress the body ({exc})") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise TooLarge(limit, inflated=True)
    return body


def read_json_body(request: Request, max_bytes: int, decode: Callable[[bytes], Any] = json.loads) -> dict[str, Any]:
    """The request's JSON object, with 411/413/400 for what a client got wrong.

    `decode` may keep values undecoded (`/v1/messages` keeps them as raw JSON); it
    raises `ValueError` on what is not JSON and returns a non-dict for what is not an object.
    """
    try:
        raw = read(request, max_bytes, length_required=True)
    except LengthRequired:
        raise GatewayError(
            411, "A Content-Length header is required; chunked request bodies are not accepted."
        ) from None
    except InvalidLength:
        raise GatewayError(400, "Content-Length is not a number.") from None
    except TooLarge as exc:
        if exc.declared is not None:
            message = (
                f"Request body of {exc.declared} bytes exceeds the gateway's limit of {max_bytes} bytes "
                "(limits.max_request_bytes)."
            )
        else:
            message = f"Request body exceeds {max_bytes} bytes."
        raise GatewayError(413, message, "request_too_large") from None
    if not raw:
        raise GatewayError(400, "The request body is empty; send a JSON object.")
    try:
        body = decode(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.")
    return body
