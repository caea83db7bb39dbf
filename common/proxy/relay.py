"""Relaying an upstream's server-sent events to the client, unbuffered, while `sse` reads their usage.

The request's own thread reads the upstream response as bytes arrive
(`http1.Response.iter_chunks`: the complete HTTP chunks at hand, joined, so
events that came together cost one pass and one write) and returns them, unchanged, from the WSGI body iterator
`StreamRelay`, which the server writes to the client at once: no extra thread,
no queue, no hand-off per event. The upstream socket's timeout is the ping
interval: after `timeouts.ping_interval_ms` of upstream silence the iterator
returns our own `event: ping` (only between events) and goes on reading.
When the client has gone, `close()` keeps reading the upstream to its end, so
the usage metered is the upstream's real figure.

Metering is settled exactly once: just before the last chunk (the one carrying
`message_stop`) is handed to the server, since Cloud Run throttles CPU once
the response is complete; or, when the client disconnected, after the
upstream's end (bounded by `timeouts.drain_after_disconnect_ms`).

A stream that ends without the upstream's final usage is billed what was
relayed (`UsageScanner.abort_floor`) and its status says why, so the row is
marked and admission (`spend.observed`) does not learn from it:
STATUS_DROPPED (the upstream's connection broke), STATUS_TIMED_OUT (it went
silent past `timeouts.upstream_read_ms`), STATUS_DRAIN_CUT (the client left
and the upstream was still streaming at the drain deadline) and
STATUS_SHUT_DOWN (the instance was told to stop: `spend.shutdown` calls
`settle_open_streams` before its grace period ends).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from common.core import logs
from common.proxy import http1
from common.proxy.sse import PING, STREAM_ERROR, UsageScanner, at_boundary, ends_message
from common.spend import shutdown

STATUS_DRAIN_CUT = 499
STATUS_DROPPED = 502
STATUS_SHUT_DOWN = 503
STATUS_TIMED_OUT = 504

_open: set[StreamRelay] = set()
_open_lock = threading.Lock()


def open_streams() -> int:
    """How many streams this process is relaying and has not settled."""
    return len(_open)


def settle_open_streams() -> int:
    """Settle every open stream now with what it relayed (the instance is stopping); how many."""
    with _open_lock:
        relays = list(_open)
    return sum(1 for relay in relays if relay.settle_partial(STATUS_SHUT_DOWN, "instance stopping"))


class StreamRelay:
    """The WSGI body of a streamed reply (iterable with `close()`, as PEP 3333 wants).

    Runs entirely in the request's thread: each `__next__` reads the next
    upstream chunk and returns it as is. The scan for usage of a chunk is
    deferred to the start of the next call, so it runs after the chunk has been
    handed to the server. `settle(status)` is called exactly once: before the
    last chunk is handed over, or from `close()` after a client disconnect once
    the upstream has been read to its end (or the drain deadline passed).
    """

    def __init__(
        self,
        response: http1.Response,
        scanner: UsageScanner,
        settle: Callable[[int], None],
        *,
        status: int,
        ping_seconds: float,
        read_seconds: float,
        drain_seconds: float,
    ) -> None:
        self._response = response
        self._scanner = scanner
        self._settle_fn = settle
        self._status = status
        self._drain = drain_seconds
        self._chunks = response.iter_chunks(max(ping_seconds, 0.05), read_seconds)
        self._unscanned: bytes | None = None
        self._settled = False
        self._finished = False
        self._at_boundary = True
        self._error: Exception | None = None
        # Guards the scanner and the settle: shutdown settles from its own thread (uncontended otherwise).
        self._settle_lock = threading.RLock()
        with _open_lock:
            _open.add(self)
        shutdown.watch()

    def __iter__(self) -> StreamRelay:
        return self

    def _scan_pending(self) -> None:
        if self._unscanned is not None:
            with self._settle_lock:
                if self._unscanned is not None:
                    self._scanner.feed(self._unscanned)
                    self._unscanned = None

    def _feed(self, chunk: bytes) -> None:
        with self._settle_lock:
            self._scanner.feed(chunk)

    def _next_chunk(self) -> bytes | None:
        """The next upstream bytes, b"" after a silent ping interval, None at the end (or on error)."""
        try:
            return next(self._chunks)
        except StopIteration:
            return None
        except http1.UpstreamHTTPError as exc:
            self._error = exc
            return None

    def __next__(self) -> bytes:
        if self._finished:
            raise StopIteration
        self._scan_pending()
        while True:
            chunk = self._next_chunk()
            if chunk is None:
                return self._last(b"")
            if not chunk:
                if self._at_boundary:
                    return PING
                continue
            self._at_boundary = at_boundary(chunk)
            if ends_message(chunk):
                return self._last(chunk)
            self._unscanned = chunk
            return chunk

    def _read_to_end(self, deadline: float) -> tuple[bytes, bool]:
        """Upstream bytes until its end or `deadline` (monotonic): (bytes, ended)."""
        parts: list[bytes] = []
        while time.monotonic() < deadline:
            chunk = self._next_chunk()
            if chunk is None:
                return b"".join(parts), True
            if chunk:
                self._feed(chunk)
                parts.append(chunk)
        return b"".join(parts), False

    def _last(self, item: bytes) -> bytes:
        """The final bytes: read to the upstream's end (briefly), settle, then hand them over."""
        ended = True
        if item:
            self._feed(item)
            rest, ended = self._read_to_end(time.monotonic() + min(self._drain, 5.0))
            item += rest
        if not ended:
            # The upstream kept the stream open after message_stop: settle with
            # what it reported; anything later is still relayed.
            self._settle(self._status)
            return item
        self._finished = True
        if self._error is not None and not self._settled:
            if self._at_boundary and not item:
                item = STREAM_ERROR
            self._settle_interrupted()
        else:
            self._settle(self._status)
        if not item:
            raise StopIteration
        return item

    def close(self) -> None:
        """The server is done with us: normally after the end; early if the client went away."""
        self._finished = True
        if self._settled:
            return
        # The client disconnected (or the server gave up): keep reading the
        # upstream so the usage it reports is the real one, then settle.
        self._scan_pending()
        started = time.monotonic()
        _, ended = self._read_to_end(started + self._drain)
        if not ended:
            self._chunks.close()
            self._response.close()
            self.settle_partial(STATUS_DRAIN_CUT, "upstream still streaming at the drain deadline")
            return
        logs.info(
            "client disconnected mid-stream; upstream read to its end for metering",
            drained_ms=round((time.monotonic() - started) * 1000, 1),
        )
        if self._error is not None:
            self._settle_interrupted()
            return
        # The upstream's status, not a client-side code: the tokens were produced and are owed.
        self._settle(self._status)

    def _settle_interrupted(self) -> None:
        error = self._error
        timed_out = isinstance(error, http1.ResponseTimeout)
        self.settle_partial(
            STATUS_TIMED_OUT if timed_out else STATUS_DROPPED,
            "upstream stream interrupted",
            http1.describe(error) if error is not None else None,
        )

    def settle_partial(self, status: int, why: str, error: str | None = None) -> bool:
        """Settle with what was relayed: the abort floor on the output, `status` marking the row.

        False if the stream was settled already. Safe from another thread (shutdown)."""
        with self._settle_lock:
            if self._settled:
                return False
            self._scan_pending()
            estimated = self._scanner.abort_floor()
            usage = self._scanner.usage
            logs.warning(
                why + "; billed what was relayed",
                status=status,
                error=error,
                output_estimated=estimated,
                relayed_output_chars=self._scanner.output_chars,
                billed_input=usage.input_tokens,  # field names with "token" in them are redacted
                billed_output=usage.output_tokens,
            )
            self._settle_locked(status)
        return True

    def _settle(self, status: int) -> None:
        with self._settle_lock:
            self._settle_locked(status)

    def _settle_locked(self, status: int) -> None:
        if self._settled:
            return
        self._settled = True
        with _open_lock:
            _open.discard(self)
        try:
            self._settle_fn(status)
        except Exception as exc:  # metering must never break the relay
            logs.error("metering failed after a stream", error=f"{type(exc).__name__}: {exc}")


shutdown.on_terminate(settle_open_streams, open_count=open_streams)
