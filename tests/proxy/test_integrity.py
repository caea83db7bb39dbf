"""Spend integrity at the proxy: control characters refused at the edge, mid-stream failures billed as relayed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from support import base_config, live_gateway, token_for, write_config

from common.core.usage import Usage
from common.db import pool
from common.proxy import http1, relay, sse
from common.proxy.relay import StreamRelay
from common.proxy.sse import UsageScanner
from gateway.standins import upstream as standin_module

START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":900,"output_tokens":1}}}'
    b"\n\n"
)
TEXT = "x" * 399  # 399 characters relayed: the floor bills ceil(399 / 4) = 100 output tokens
DELTA_TEXT = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'
    + TEXT.encode()
    + b'"}}\n\n'
)
FINAL = b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":42}}\n\n'
STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
Serve = Callable[[list[bytes | float]], int]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _relay(port: int, log: list[Any], read_seconds: float = 5) -> tuple[StreamRelay, UsageScanner]:
    scanner = UsageScanner(Usage())

    def settle(status: int) -> None:
        log.append((status, scanner.usage.input_tokens, scanner.usage.output_tokens))

    response = http1.Client(maxsize=1).post(f"http://127.0.0.1:{port}/", {}, b"{}", 2, 2)
    body = StreamRelay(
        response, scanner, settle, status=200, ping_seconds=0.1, read_seconds=read_seconds, drain_seconds=5
    )
    return body, scanner


def test_an_upstream_drop_mid_stream_bills_what_was_relayed(serve_once: Serve) -> None:
    """Before: message_start's usage only (900 in, 1 out) and status 502. Now the relayed text's floor."""
    log: list[Any] = []
    body, _ = _relay(serve_once([HEAD, _chunk(START), _chunk(DELTA_TEXT), b"ff\r\ncut"]), log)
    relayed = [item for item in body if item != sse.PING]
    body.close()
    # the events that came in one read may be one item; the error event is our own, last
    assert b"".join(relayed) == START + DELTA_TEXT + sse.STREAM_ERROR and relayed[-1] == sse.STREAM_ERROR
    assert log == [(relay.STATUS_DROPPED, 900, 100)]


def test_an_upstream_read_timeout_mid_stream_is_504_and_billed_what_was_relayed(serve_once: Serve) -> None:
    log: list[Any] = []
    body, _ = _relay(serve_once([HEAD, _chunk(START), _chunk(DELTA_TEXT), 3.0, _chunk(STOP)]), log, read_seconds=0.5)
    list(body)
    body.close()
    assert log == [(relay.STATUS_TIMED_OUT, 900, 100)]


def test_the_upstreams_final_usage_wins_over_the_floor(serve_once: Serve) -> None:
    log: list[Any] = []
    body, _ = _relay(serve_once([HEAD, _chunk(START), _chunk(DELTA_TEXT), _chunk(FINAL), b"ff\r\ncut"]), log)
    list(body)
    body.close()
    assert log == [(relay.STATUS_DROPPED, 900, 42)]  # message_delta arrived: its figure, not an estimate


def test_streams_open_at_shutdown_are_settled_with_what_they_relayed(serve_once: Serve) -> None:
    log: list[Any] = []
    body, _ = _relay(serve_once([HEAD, _chunk(START), _chunk(DELTA_TEXT), 2.0, _chunk(FINAL), _chunk(STOP)]), log)
    relayed = next(body)  # the two events before the pause: one item if they were read together
    while relayed != START + DELTA_TEXT:
        relayed += next(body)
    assert relay.open_streams() >= 1
    assert relay.settle_open_streams() >= 1  # what spend.shutdown runs before the grace period ends
    assert log == [(relay.STATUS_SHUT_DOWN, 900, 100)]
    rest = [item for item in body if item != sse.PING]
    body.close()
    assert rest[-1].endswith(STOP) and len(log) == 1  # the stream still reaches the client; settled once


@pytest.fixture(scope="module")
def standin() -> Iterator[Any]:
    handle = standin_module.start()
    yield handle
    handle.stop()


def _post(url: str, token: str, model: str) -> requests.Response:
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    return requests.post(url + "/v1/messages", data=json.dumps(body), headers=headers, timeout=30)


@pytest.mark.parametrize("model", ["claude-haiku-4-5\u0000", "claude-haiku-4-5\u001b[2J", "claude-\u0085haiku"])
def test_a_poisoned_request_among_60_is_refused_at_the_edge_and_60_rows_are_written(
    tmp_path: Path, database_url: str, standin: Any, model: str
) -> None:
    """Before: the NUL model passed policy and routing and its settle failed the batch (60 served, 29 rows)."""
    standin.reset()
    path = write_config(tmp_path, base_config(database_url, upstream_url=standin.base_url))
    with live_gateway(path) as live:
        token = token_for(path, email="dev@example.com", groups=("eng",))
        models = ["claude-haiku-4-5"] * 30 + [model] + ["claude-haiku-4-5"] * 30
        with ThreadPoolExecutor(16) as pool_:
            replies = list(pool_.map(lambda m: _post(live.url, token, m), models))
    poisoned = replies[30]
    assert poisoned.status_code == 400
    error = poisoned.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith("model: ")
    assert [r.status_code for r in replies[:30] + replies[31:]] == [200] * 60
    assert standin.stats()["completed"] == 60  # the refused one never reached the upstream
    count, holds = pool.get().execute("SELECT (SELECT count(*) FROM spend_usage), (SELECT count(*) FROM spend_holds)")[
        0
    ]
    assert (count, holds) == (60, 0)
