"""The SSE scanner as a protocol without I/O: bytes in, usage out, in any chunking and encoding."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from common.core.usage import Usage
from common.proxy import sse
from common.proxy.sse import UsageScanner, usage_of_body

ROOT_DIR = Path(__file__).resolve().parents[2]


def _events() -> bytes:
    start = {
        "type": "message_start",
        "message": {"usage": {"input_tokens": 10, "cache_read_input_tokens": 3, "output_tokens": 1}},
    }
    delta = {
        "type": "message_delta",
        "usage": {
            "output_tokens": 99,
            "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
        },
    }
    text = {"type": "content_block_delta", "delta": {"type": "text_delta", "text": 'not "usage" here'}}
    return b"".join(
        f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode()
        for e in (start, text, delta, {"type": "message_stop"})
    )


def _feed_in_pieces(scanner: UsageScanner, stream: bytes, cuts: list[int]) -> None:
    position = 0
    for cut in sorted(set(cuts)):
        scanner.feed(stream[position:cut])
        position = max(position, cut)
    scanner.feed(stream[position:])


@given(st.lists(st.integers(min_value=1, max_value=600), max_size=12))
def test_usage_scanner_is_indifferent_to_chunk_boundaries(cuts: list[int]) -> None:
    scanner = UsageScanner(Usage())
    _feed_in_pieces(scanner, _events(), cuts)
    assert scanner.usage == Usage(10, 99, 3, 4, 6)


@given(st.lists(st.integers(min_value=1, max_value=400), max_size=8))
def test_a_gzip_stream_is_scanned_as_it_inflates(cuts: list[int]) -> None:
    scanner = UsageScanner(Usage(), "GZIP")
    _feed_in_pieces(scanner, gzip.compress(_events()), cuts)
    assert scanner.usage == Usage(10, 99, 3, 4, 6)


def test_a_corrupt_compressed_stream_stops_the_scan_and_raises_nothing() -> None:
    scanner = UsageScanner(Usage(), "deflate")
    scanner.feed(b"not deflate at all")
    scanner.feed(zlib.compress(_events()))
    assert scanner.usage == Usage()


def test_an_endless_line_is_not_accumulated_and_the_scan_recovers() -> None:
    scanner = UsageScanner(Usage())
    # Over a MiB without a newline: not an event the upstream sends, so the scanner drops it
    # rather than holding it, even though its end would have made it a usage line.
    scanner.feed(b'data: {"type":"message_delta","usage":{"output_tokens":5},"pad":"' + b"x" * (2 << 20))
    scanner.feed(b'"}\n\n')
    assert scanner.usage == Usage()
    scanner.feed(_events())
    assert scanner.usage == Usage(10, 99, 3, 4, 6)


def test_usage_of_a_plain_reply() -> None:
    reply = json.dumps({"type": "message", "usage": {"input_tokens": 7, "output_tokens": 2}}).encode()
    assert usage_of_body(reply, None) == Usage(7, 2)
    assert usage_of_body(gzip.compress(reply), "gzip") == Usage(7, 2)
    assert usage_of_body(zlib.compress(reply), "deflate") == Usage(7, 2)
    assert usage_of_body(b'{"input_tokens": 12}', None) == Usage()  # count_tokens: nothing generated
    assert usage_of_body(b"<html>", None) == Usage()
    assert usage_of_body(reply, "gzip") == Usage()  # a wrong encoding is no usage, not an error


def test_event_boundaries_and_the_last_event() -> None:
    assert sse.at_boundary(b"event: ping\ndata: {}\n\n") and sse.at_boundary(b"data: {}\r\n\r\n")
    assert not sse.at_boundary(b"event: content_block_delta\ndata: {")
    assert sse.ends_message(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert not sse.ends_message(_events().split(b"event: message_stop")[0])
    assert sse.at_boundary(sse.PING) and sse.at_boundary(sse.STREAM_ERROR)


def test_the_scanner_does_no_io() -> None:
    """Importing it pulls in no web framework, socket, logging or transport (h11-style)."""
    code = (
        "import sys, common.proxy.sse\n"
        "loaded = [m for m in ('flask', 'werkzeug', 'socket', 'logging', 'common.core.logs', 'common.proxy.http1')"
        " if m in sys.modules]\n"
        "print(','.join(loaded))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT_DIR, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""
