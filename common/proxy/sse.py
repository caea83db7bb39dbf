"""The Messages API's server-sent events as bytes: the usage they report, and the events we add.

Protocol without I/O (h11-style): no sockets, no Flask, no logging. The relay
(`proxy.relay`) feeds `UsageScanner` the stream's bytes as they pass, in
whatever chunks they came; `usage_of_body` reads a plain reply. Only complete
lines that contain `"usage"` and belong to a `message_start` or
`message_delta` event are decoded (counts are cumulative, the latest wins), so
the scan neither copies the stream nor delays it. It also counts the characters
of the content deltas that passed (text, thinking, tool-input JSON): when a
stream ends without its `message_delta` (the upstream dropped or went silent,
the instance shut down), `abort_floor` bills the output as those characters /
CHARS_PER_TOKEN, the floor the protocol's own abort estimate uses, instead of
the `output_tokens: 1` of `message_start`. `PING` and `STREAM_ERROR`
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
CHARS_PER_TOKEN = 4  # relayed output characters per estimated output token (the abort floor)
_DELTA_FIELDS = ("text", "thinking", "partial_json")
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

    __slots__ = ("_decompress", "_tail", "final", "output_chars", "usage")

    def __init__(self, usage: Usage, content_encoding: str | None = None) -> None:
        self.usage = usage
        self.output_chars = 0  # characters of content deltas seen
        self.final = False  # a message_delta with usage was seen: the output figure is the upstream's
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
        usage = b'"usage"' in data
        if not usage and b"content_block_delta" not in data:
            return
        for line in data[:end].split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            if b'"usage"' in line:
                self._line(line[5:])
            elif b"content_block_delta" in line:
                self._delta(line[5:])

    def abort_floor(self) -> bool:
        """For a stream that ended early: output tokens at least the relayed characters / CHARS_PER_TOKEN.

        Only when no `message_delta` usage arrived (then the upstream's own figure
        stands). True when the estimate raised the output figure."""
        if self.final:
            return False
        estimate = -(-self.output_chars // CHARS_PER_TOKEN)
        if estimate <= self.usage.output_tokens:
            return False
        self.usage.output_tokens = estimate
        return True

    def _delta(self, payload: bytes) -> None:
        try:
            event = _decode(payload)
        except msgspec.DecodeError:
            return
        delta = event.get("delta") if isinstance(event, dict) else None
        if isinstance(delta, dict):
            for name in _DELTA_FIELDS:
                value = delta.get(name)
                if isinstance(value, str):
                    self.output_chars += len(value)

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
            self.final = self.final or isinstance(usage, dict)
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
