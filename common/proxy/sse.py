"""The Messages API's server-sent events as bytes: the usage they report, and the events we add.

Protocol without I/O (h11-style): no sockets, no Flask, no logging. The relay
(`proxy.relay`) feeds `UsageScanner` the stream's bytes as they pass, in
whatever chunks they came; `usage_of_body` reads a plain reply. Only complete
lines that contain `"usage"` and belong to a `message_start` or
`message_delta` event are decoded (counts are cumulative, the latest wins), so
the scan neither copies the stream nor delays it. `PING` and `STREAM_ERROR`
are the events the gateway writes itself; `at_boundary` and `ends_message`
say where a chunk leaves the stream.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

from common.core.usage import Usage

PING = b'event: ping\ndata: {"type": "ping"}\n\n'
STREAM_ERROR = (
    b"event: error\n"
    b'data: {"type":"error","error":{"type":"api_error","message":"The upstream stream was interrupted."}}\n\n'
)
_MAX_TAIL = 1 << 20  # an incomplete line longer than this is not usage: stop accumulating it
_decode = msgspec.json.decode


def at_boundary(chunk: bytes) -> bool:
    """Does `chunk` end an event (so one of our own may follow it)?"""
    return chunk.endswith(b"\n\n") or chunk.endswith(b"\r\n\r\n")


def ends_message(chunk: bytes) -> bool:
    """Does `chunk` carry `message_stop`, the last event of a reply?"""
    return b"message_stop" in chunk


class UsageScanner:
    """Reads `usage` from SSE bytes as they pass, without delaying them."""

    __slots__ = ("_decompress", "_tail", "usage")

    def __init__(self, usage: Usage, content_encoding: str | None = None) -> None:
        self.usage = usage
        self._tail = b""
        encoding = (content_encoding or "").lower()
        self._decompress: Any = None
        if encoding == "gzip":
            self._decompress = zlib.decompressobj(47)
        elif encoding == "deflate":
            self._decompress = zlib.decompressobj()

    def feed(self, chunk: bytes) -> None:
        if self._decompress is not None:
            try:
                chunk = self._decompress.decompress(chunk)
            except zlib.error:
                self._decompress = None
                return
        data = self._tail + chunk if self._tail else chunk
        end = data.rfind(b"\n")
        if end < 0:
            self._tail = data if len(data) < _MAX_TAIL else b""
            return
        tail = data[end + 1 :]
        self._tail = tail if len(tail) < _MAX_TAIL else b""
        if b'"usage"' not in data:
            return
        for line in data[:end].split(b"\n"):
            if b'"usage"' in line and line.startswith(b"data:"):
                self._line(line[5:])

    def _line(self, payload: bytes) -> None:
        try:
            event = _decode(payload)
        except msgspec.DecodeError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
        elif kind == "message_delta":
            usage = event.get("usage")
        else:
            return
        if isinstance(usage, dict):
            self.usage.merge(usage)


def usage_of_body(body: bytes, content_encoding: str | None) -> Usage:
    """The `usage` of a plain (non-streamed) reply."""
    usage = Usage()
    encoding = (content_encoding or "").lower()
    try:
        if encoding == "gzip":
            body = zlib.decompress(body, 47)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        parsed = _decode(body)
    except (zlib.error, msgspec.DecodeError):
        return usage
    # A count_tokens reply (`{"input_tokens": N}`) has no `usage`: nothing was generated, nothing is owed.
    found = parsed.get("usage") if isinstance(parsed, dict) else None
    if isinstance(found, dict):
        usage.merge(found)
    return usage
