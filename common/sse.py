"""Relaying an upstream's server-sent events to the client, unbuffered, while reading its usage.

A reader thread reads the upstream response chunk by chunk as bytes arrive
(`http1.Response.iter_chunks`: each HTTP chunk, or whatever a read returns) and hands each chunk,
unchanged, to the WSGI body iterator `StreamRelay`, which the server writes to
the client at once. The thread exists for two reasons: the iterator can wait
for the next chunk with a timeout and emit our own `event: ping` after
`timeouts.ping_interval_ms` of upstream silence (a socket timeout would
poison the connection), and the upstream keeps being read after the client
has gone, so the usage metered is the upstream's real figure.

Usage is read by `UsageScanner` from the same chunks without copying the
stream: only complete lines that contain `"usage"` and belong to a
`message_start` or `message_delta` event are decoded (counts are cumulative,
the latest wins). Metering is settled exactly once: just before the last chunk
(the one carrying `message_stop`) is handed to the server, since Cloud Run
throttles CPU once the response is complete; or, when the client disconnected,
after the upstream's end (bounded by `timeouts.drain_after_disconnect_ms`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import msgspec

from common import logs
from common.metering import Usage

PING = b'event: ping\ndata: {"type": "ping"}\n\n'
STREAM_ERROR = (
    b"event: error\n"
    b'data: {"type":"error","error":{"type":"api_error","message":"The upstream stream was interrupted."}}\n\n'
)
_END = object()
_MAX_TAIL = 1 << 20  # an incomplete line longer than this is not usage: stop accumulating it
_decode = msgspec.json.decode


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
    if isinstance(parsed, dict):
        found = parsed.get("usage")
        if isinstance(found, dict):
            usage.merge(found)
        elif isinstance(parsed.get("input_tokens"), int) and len(parsed) == 1:
            pass  # count_tokens: not a generation, nothing is consumed
    return usage


class _ReaderThreads:
    """Reusable daemon threads for stream readers (starting a thread costs ~120 µs, a hand-off ~40 µs).

    A task never waits for a free thread: when none is idle a new one starts,
    so every open stream has its reader. Threads idle for a minute exit.
    """

    IDLE_SECONDS = 60.0

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a task and not yet promised one

    def submit(self, task: Callable[[], None]) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._tasks.put(task)
        if spawn:
            threading.Thread(target=self._work, name="sse-reader", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                task = self._tasks.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody was promised this thread: leave
                        self._idle -= 1
                        return
                continue  # a task is on its way to this thread
            try:
                task()
            except BaseException as exc:  # a reader never kills its thread
                logs.error("stream reader failed", error=f"{type(exc).__name__}: {exc}")
            with self._lock:
                self._idle += 1


_READERS = _ReaderThreads()


class StreamRelay:
    """The WSGI body of a streamed reply (iterable with `close()`, as PEP 3333 wants).

    `settle(status)` is called exactly once: before the last chunk is handed
    to the server, or from `close()` after a client disconnect once the
    upstream has been read to its end (or the drain deadline passed).
    """

    def __init__(
        self,
        response: Any,
        scanner: UsageScanner,
        settle: Callable[[int], None],
        *,
        status: int,
        ping_seconds: float,
        drain_seconds: float,
    ) -> None:
        self._response = response
        self._scanner = scanner
        self._settle_fn = settle
        self._status = status
        self._ping = max(ping_seconds, 0.05)
        self._drain = drain_seconds
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._settled = False
        self._finished = False
        self._at_boundary = True
        self._discard = False
        self._error: BaseException | None = None
        self._sent_events = 0
        self._reader_done = threading.Event()
        _READERS.submit(self._read)

    # -- the reader thread ---------------------------------------------------------
    def _read(self) -> None:
        feed = self._scanner.feed
        put = self._queue.put
        try:
            for chunk in self._response.iter_chunks():  # releases the connection at the end
                if not self._discard:
                    put(chunk)  # relay first; `_last` joins this thread before settling
                feed(chunk)
        except BaseException as exc:  # the upstream broke or we abandoned it
            self._error = exc
            with contextlib.suppress(Exception):
                self._response.close()
        finally:
            put(_END)
            self._reader_done.set()

    # -- the WSGI side -------------------------------------------------------------
    def __iter__(self) -> StreamRelay:
        return self

    def __next__(self) -> bytes:
        if self._finished:
            raise StopIteration
        get = self._queue.get
        while True:
            try:
                item = get(timeout=self._ping)
            except queue.Empty:
                if self._at_boundary:
                    return PING
                continue
            if item is _END:
                return self._last(b"")
            self._at_boundary = item.endswith(b"\n\n") or item.endswith(b"\r\n\r\n")
            if b"message_stop" in item:
                return self._last(item)
            return item  # type: ignore[no-any-return]

    def _last(self, item: bytes) -> bytes:
        """The final bytes: wait (briefly) for the upstream's end, settle, then hand them over."""
        if item:
            ended = self._reader_done.wait(timeout=min(self._drain, 5.0))
            item += self._collect(block=ended)
            if not ended:
                # The upstream kept the stream open after message_stop: settle
                # with what it reported; later bytes are still relayed.
                self._settle(self._status)
                return item
        else:
            self._finished = True
        if self._error is not None and not self._settled:
            logs.warning("upstream stream interrupted", error=type(self._error).__name__)
            if self._at_boundary:
                item += STREAM_ERROR
            self._settle(502)
        else:
            self._settle(self._status)
        self._finished = True
        if not item:
            raise StopIteration
        return item

    def _collect(self, block: bool) -> bytes:
        parts: list[bytes] = []
        while True:
            try:
                item = self._queue.get(block=block, timeout=1.0 if block else None)
            except queue.Empty:
                break
            if item is _END:
                break
            parts.append(item)
        return b"".join(parts)

    def close(self) -> None:
        """The server is done with us: normally after the end; early if the client went away."""
        self._finished = True
        if self._settled:
            return
        # The client disconnected (or the server gave up): keep reading the
        # upstream so the usage it reports is the real one, then settle.
        self._discard = True
        started = time.monotonic()
        if not self._reader_done.wait(timeout=self._drain):
            logs.warning(
                "upstream still streaming at the drain deadline; metering what it reported so far",
                drain_seconds=self._drain,
            )
            with contextlib.suppress(Exception):
                self._response.shutdown()
            self._reader_done.wait(timeout=2.0)
        logs.info(
            "client disconnected mid-stream; upstream read to its end for metering",
            drained_ms=round((time.monotonic() - started) * 1000, 1),
        )
        # The upstream's status, not a client-side code: the tokens were produced and are owed.
        self._settle(self._status if self._error is None else 502)

    def _settle(self, status: int) -> None:
        if self._settled:
            return
        self._settled = True
        try:
            self._settle_fn(status)
        except Exception as exc:  # metering must never break the relay
            logs.error("metering failed after a stream", error=f"{type(exc).__name__}: {exc}")
