"""`StreamRelay` over a real socket: bytes relayed as written, pings in silence, one settle at the right moment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common.core.usage import Usage
from common.proxy import http1, sse
from common.proxy.relay import StreamRelay
from common.proxy.sse import UsageScanner

START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":1}}}\n\n'
)
DELTA = b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":42}}\n\n'
STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
Serve = Callable[[list[bytes | float]], int]


def _relay(port: int, log: list[Any]) -> tuple[StreamRelay, UsageScanner]:
    """A relay of the chunked SSE response the scripted upstream on `port` plays."""
    scanner = UsageScanner(Usage())

    def settle(status: int) -> None:
        log.append(("settled", status, scanner.usage.output_tokens))

    response = http1.Client(maxsize=1).post(f"http://127.0.0.1:{port}/", {}, b"{}", 2, 2)
    relay = StreamRelay(response, scanner, settle, status=200, ping_seconds=0.1, read_seconds=5, drain_seconds=5)
    return relay, scanner


def test_chunks_pass_unchanged_pings_fill_silence_and_settle_precedes_the_last_chunk(serve_once: Serve) -> None:
    log: list[Any] = []
    relay, scanner = _relay(serve_once([HEAD, _chunk(START), 0.35, _chunk(DELTA), _chunk(STOP), b"0\r\n\r\n"]), log)
    for item in relay:
        log.append(item)
    relay.close()
    relayed = [item for item in log if isinstance(item, bytes)]
    events = [item for item in relayed if item != sse.PING]
    # unchanged bytes; START came alone (a pause followed), DELTA and STOP as read (together or not)
    assert events[0] == START and b"".join(events) == START + DELTA + STOP
    assert sse.PING in relayed[1:-2]  # during the upstream's silence, between two events
    settles = [item for item in log if isinstance(item, tuple)]
    assert settles == [("settled", 200, 42)]
    assert log.index(settles[0]) == len(log) - 2  # before the last chunk went to the client
    assert scanner.usage == Usage(input_tokens=9, output_tokens=42)


def test_a_client_that_leaves_early_is_settled_with_what_the_upstream_then_produced(serve_once: Serve) -> None:
    log: list[Any] = []
    relay, scanner = _relay(serve_once([HEAD, _chunk(START), 0.2, _chunk(DELTA), _chunk(STOP), b"0\r\n\r\n"]), log)
    assert next(relay) == START
    relay.close()  # the server does this when the client disconnects
    assert [item[1] for item in log] == [200]
    assert scanner.usage == Usage(input_tokens=9, output_tokens=42)  # drained to the upstream's end
    assert list(relay) == []


def test_an_interrupted_upstream_ends_with_an_error_event_and_settles_as_502(serve_once: Serve) -> None:
    log: list[Any] = []
    relay, _ = _relay(serve_once([HEAD, _chunk(START), b"ff\r\npartial"]), log)  # then the connection closes mid-chunk
    relayed = [item for item in relay if item != sse.PING]
    relay.close()
    # The cut came between events (the partial chunk was never relayed): an error event the client can parse.
    assert relayed == [START, sse.STREAM_ERROR]
    assert [item[1] for item in log] == [502]
