"""Server-sent events as the load generator sees them: when each event arrived.

`SseTimer.feed(chunk, now)` takes body chunks as they come off the socket with
their arrival time and returns the events the chunk completed, each stamped with
that time (an event split across chunks arrives with its last byte). The gaps
between consecutive events are what buffering would stretch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    data: str
    at: float


@dataclass
class SseTimer:
    """Incremental SSE framing (WHATWG rules for line ends and fields) with arrival times."""

    _buffer: bytes = b""
    _name: str = ""
    _data: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def feed(self, chunk: bytes, now: float) -> list[Event]:
        done: list[Event] = []
        self._buffer += chunk
        while True:
            line, sep, rest = _split_line(self._buffer)
            if not sep:
                break
            self._buffer = rest
            if not line:
                if self._data or self._name:
                    event = Event(self._name or "message", "\n".join(self._data), now)
                    done.append(event)
                    self.events.append(event)
                self._name, self._data = "", []
                continue
            if line.startswith(b":"):
                continue  # a comment (keep-alive)
            key, _, value = line.partition(b":")
            text = value[1:] if value.startswith(b" ") else value
            if key == b"event":
                self._name = text.decode("utf-8", "replace")
            elif key == b"data":
                self._data.append(text.decode("utf-8", "replace"))
        return done


def _split_line(buffer: bytes) -> tuple[bytes, bytes, bytes]:
    """(line, separator, rest) at the first CRLF, LF or CR; separator empty when incomplete."""
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr == -1 and lf == -1:
        return buffer, b"", b""
    if cr != -1 and (lf == -1 or cr < lf):
        if cr + 1 == len(buffer):
            return buffer, b"", b""  # a CR at the end may be the first half of CRLF
        if buffer[cr + 1 : cr + 2] == b"\n":
            return buffer[:cr], b"\r\n", buffer[cr + 2 :]
        return buffer[:cr], b"\r", buffer[cr + 1 :]
    return buffer[:lf], b"\n", buffer[lf + 1 :]


def gaps(times: Sequence[float]) -> list[float]:
    """Time between each event and the one before it (same unit as `times`)."""
    return [b - a for a, b in itertools.pairwise(times)]
