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
from werkzeug.exceptions import ClientDisconnected

from common.core.errors import GatewayError
from common.http import server

MAX_DEPTH = 128  # JSON nesting a client may send: Claude Code's deepest (a tool's input schema) is far below


class InvalidJSON(ValueError):
    """Not JSON the gateway can hold: too deeply nested, or a string with a lone UTF-16 surrogate."""


def loads(raw: bytes | str) -> Any:
    """`json.loads`, and `InvalidJSON` (a ValueError) for nesting past MAX_DEPTH or a lone surrogate.

    Python parses both (or raises RecursionError, not ValueError), and both fail
    later where no one expects them: recursion in a handler, or a string that
    cannot be encoded as UTF-8 for the database, the log or the upstream.
    """
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidJSON(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    _check(value, suspect_surrogates=_may_hold_surrogates(raw))
    return value


def _may_hold_surrogates(raw: bytes | str) -> bool:
    # Only an escape (or, in bytes, the UTF-8 form json accepts with surrogatepass) can make one.
    if isinstance(raw, str):
        return True  # a str may hold one as is; only tests and internal callers pass str
    return b"\\u" in raw or b"\xed" in raw


def _check(value: Any, suspect_surrogates: bool) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:  # iterative: the point is not to recurse on hostile depth
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise InvalidJSON(f"JSON nested deeper than {MAX_DEPTH} levels")
            for key, child in item.items():
                if suspect_surrogates:
                    _check_text(key)
                if isinstance(child, (dict, list)) or (suspect_surrogates and isinstance(child, str)):
                    stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise InvalidJSON(f"JSON nested deeper than {MAX_DEPTH} levels")
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list, str)))
        elif isinstance(item, str) and suspect_surrogates:
            _check_text(item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJSON("a JSON string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text") from None


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


class Truncated(BodyError):
    """The body ended before its Content-Length: the client went away (or, with `timed_out`, sent too slowly)."""

    def __init__(self, declared: int | None, received: int, timed_out: bool = False) -> None:
        super().__init__(
            f"body ended after {received} of {declared} bytes" + (" (too slow)" if timed_out else "")
            if declared is not None
            else f"body ended after {received} bytes"
        )
        self.timed_out = timed_out


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
    try:
        while size <= limit:  # a stream may return short reads: loop until its end or past the limit
            chunk = stream.read(limit + 1 - size)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    except (OSError, ClientDisconnected):  # a chunked body cut off, a reset, werkzeug's short-read check
        raise Truncated(length, size, server.body_timed_out(request.environ.get("gunicorn.socket"))) from None
    if size > limit:
        raise TooLarge(limit)
    if length is not None and size < length:
        raise Truncated(length, size, server.body_timed_out(request.environ.get("gunicorn.socket")))
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


def read_json_body(request: Request, max_bytes: int, decode: Callable[[bytes], Any] = loads) -> dict[str, Any]:
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
    except Truncated as exc:
        if exc.timed_out:
            raise GatewayError(408, "The request body did not arrive in time.") from None
        raise GatewayError(400, "The request body ended before its Content-Length.") from None
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
    except (ValueError, UnicodeDecodeError) as exc:  # InvalidJSON is a ValueError
        raise GatewayError(400, f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.")
    return body
