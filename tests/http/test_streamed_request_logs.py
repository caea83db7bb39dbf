"""A streamed /v1/messages through a live gateway: its request id on every line, one access-log line.

The stand-in upstream speaks Vertex AI's wire format. Each test uses a model id
the price table does not know, so the settle after the stream logs a real
"no list price" warning (once per model id and process) from inside the
request; the client-disconnect test also sees the relay's drain line.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import base_config, deep_merge, live_gateway, token_for, write_config
from support.hangup import post_then_hang_up
from support.logcapture import Captured

from gateway.standins import upstream as standin_module


@pytest.fixture(scope="module")
def standin() -> Iterator[Any]:
    handle = standin_module.start()
    yield handle
    handle.stop()


def _model() -> str:
    return f"claude-zeta-{uuid.uuid4().int % 10_000}-0"  # unpriced, and new to this process


def _config(tmp_path: Path, database_url: str, standin: Any, model: str) -> Path:
    data = deep_merge(
        base_config(database_url, upstream_url=standin.base_url),
        {
            "models": [{"id": model, "upstream_model": {"vertex": f"{model}@20990101"}}],
            "managed": {"policies": [{"name": "everyone", "settings": {"availableModels": [model]}}]},
        },
    )
    return write_config(tmp_path, data)


def _body(model: str) -> bytes:
    return json.dumps(
        {"model": model, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()


def _access_lines(captured: Captured) -> list[dict[str, Any]]:
    return [x for x in captured.lines() if x["message"] == "request" and x.get("path") == "/v1/messages"]


def _wait_for_access_line(captured: Captured, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while not _access_lines(captured) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # a second line, if the gateway wrote one, would be here by now
    return _access_lines(captured)


def test_streamed_request_logs_carry_its_id_and_end_with_one_access_line(
    tmp_path: Path, database_url: str, standin: Any, captured: Captured
) -> None:
    standin.reset()
    model = _model()
    path = _config(tmp_path, database_url, standin, model)
    token = token_for(path)
    with live_gateway(path) as live:
        response = requests.post(
            live.url + "/v1/messages",
            data=_body(model),
            headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
            stream=True,
            timeout=30,
        )
        received = b"".join(response.iter_content(chunk_size=None))
        assert response.status_code == 200 and received.count(b"event: message_stop") == 1
        request_id = response.headers["request-id"]
        (access,) = _wait_for_access_line(captured)

    lines = captured.lines()
    settle = [x for x in lines if x["message"].startswith("model has no list price")]
    assert settle, "the settle after the stream logged nothing"
    assert all(x.get("request_id") == request_id for x in settle)
    during = [x for x in lines if x.get("request_id") == request_id]
    assert during[-1] == access  # the access line is the request's last
    assert all(x.get("request_id") == request_id for x in lines if x["message"] != "request")
    assert access["request_id"] == request_id
    assert (access["status"], access["stream"], access["completed"]) == (200, True, True)
    assert access["bytes_sent"] == len(received)
    assert (access["upstream"], access["model"]) == ("vertex", model)
    assert access["latency_ms"] > 0 and access["function"] == "messages"


def test_a_client_that_disconnects_mid_stream_still_gets_its_access_line(
    tmp_path: Path, database_url: str, standin: Any, captured: Captured
) -> None:
    standin.reset()
    standin.configure(gap_ms=60, deltas=25)
    model = _model()
    path = _config(tmp_path, database_url, standin, model)
    token = token_for(path)
    with live_gateway(path) as live:
        # Gone after the first event, ~1.5 s before the upstream is done.
        first = post_then_hang_up(live.url, "/v1/messages", token, _body(model))
        assert b"200" in first.split(b"\r\n")[0]
        request_id = next(
            line.split(b":", 1)[1].strip().decode()
            for line in first.split(b"\r\n\r\n")[0].split(b"\r\n")
            if line.lower().startswith(b"request-id:")
        )
        (access,) = _wait_for_access_line(captured)

    lines = captured.lines()
    messages = {x["message"]: x for x in lines if x.get("request_id") == request_id}
    assert "client disconnected mid-stream; upstream read to its end for metering" in messages  # the drain
    assert any(m.startswith("model has no list price") for m in messages)  # the settle
    assert all(x.get("request_id") == request_id for x in lines if x["message"] != "request")
    assert access["request_id"] == request_id
    assert (access["status"], access["stream"], access["completed"]) == (200, True, False)
    assert 0 < access["bytes_sent"] < 2000
    assert (access["upstream"], access["model"]) == ("vertex", model)
