"""SSE framing and gap extraction as the load generator applies them to arriving chunks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.sse import SseTimer, gaps

STREAM = (
    b'event: message_start\ndata: {"type":"message_start"}\n\n'
    b'event: ping\ndata: {"type":"ping"}\n\n'
    b": keep-alive comment\n\n"
    b'event: content_block_delta\ndata: {"i":1}\n\n'
    b'event: content_block_delta\ndata: {"i":2}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def test_events_are_stamped_with_the_arrival_of_their_last_byte() -> None:
    timer = SseTimer()
    split = STREAM.index(b"event: content_block_delta") + 10  # mid-event
    first = timer.feed(STREAM[:split], now=1.0)
    second = timer.feed(STREAM[split:], now=2.5)
    assert [e.name for e in first] == ["message_start", "ping"]
    assert [e.name for e in second] == ["content_block_delta", "content_block_delta", "message_stop"]
    assert [e.at for e in timer.events] == [1.0, 1.0, 2.5, 2.5, 2.5]
    assert timer.events[2].data == '{"i":1}'


def test_crlf_and_multiline_data() -> None:
    timer = SseTimer()
    events = timer.feed(b"event: a\r\ndata: x\r\ndata: y\r\n\r\ndata: z\r", now=0.0)
    assert [(e.name, e.data) for e in events] == [("a", "x\ny")]
    # the lone CR at the end might be half of a CRLF: nothing until more bytes come
    assert timer.feed(b"\n\r\n", now=1.0)[0].data == "z"


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=20, unique=True))
def test_any_chunking_yields_the_same_events(cuts: list[int]) -> None:
    timer = SseTimer()
    bounds = [0, *sorted(cuts), len(STREAM)]
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        timer.feed(STREAM[a:b], now=float(i))
    assert [e.name for e in timer.events] == [
        "message_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "message_stop",
    ]
    assert [e.at for e in timer.events] == sorted(e.at for e in timer.events)


def test_gaps_between_consecutive_events() -> None:
    assert gaps([]) == []
    assert gaps([1.0]) == []
    assert gaps([1.0, 1.01, 1.03, 1.03]) == pytest.approx([0.01, 0.02, 0.0])


def test_buffered_relay_shows_as_a_large_gap() -> None:
    # upstream sends 4 events 10 ms apart; a relay that buffers two at a time delivers them in pairs
    relayed = [0.010, 0.010, 0.030, 0.030]
    assert max(gaps(relayed)) == pytest.approx(0.020)
    assert max(gaps([0.00, 0.01, 0.02, 0.03])) == pytest.approx(0.010)
