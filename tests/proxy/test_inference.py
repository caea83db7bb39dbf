"""The inference proxy end to end: a live gateway in front of the upstream stand-in.

The stand-in speaks Vertex AI's and Anthropic's exact wire formats and records
what it received and sent; metering is observed by wrapping
`common.metering.finish` (what the ledger and telemetry will be handed).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from support import base_config, deep_merge, live_gateway, token_for, write_config
from support.hangup import post_then_hang_up

from common.proxy import metering
from gateway.standins import upstream as standin_module

POLICIES = [
    {
        "name": "ml",
        "match": {"groups": ["ml-research"]},
        "settings": {"availableModels": ["opus", "sonnet", "haiku"]},
    },
    {
        "name": "contractors",
        "match": {"groups": ["contractors"]},
        "settings": {"availableModels": ["haiku"]},
        "tools": {"deny": ["WebFetch", "Bash", "mcp__*"], "mode": "strip"},
    },
    {
        "name": "support",
        "match": {"groups": ["support"]},
        "settings": {"availableModels": ["claude-sonnet-4-5"]},
        "tools": {"allow": ["Read", "Grep", "mcp__jira__*"], "deny": ["mcp__jira__delete*"], "mode": "reject"},
    },
    {
        "name": "everyone",
        "settings": {"availableModels": ["sonnet", "haiku"]},
        "tools": {"deny": ["WebFetch"]},
    },
]


@dataclass
class Gateway:
    url: str
    config_path: Path
    upstream: Any
    finished: list[dict[str, Any]]

    def token(self, groups: tuple[str, ...] = ("ml-research",), email: str = "dev@example.com") -> str:
        return token_for(self.config_path, email=email, groups=groups)

    def post(
        self,
        body: dict[str, Any] | bytes,
        groups: tuple[str, ...] = ("ml-research",),
        path: str = "/v1/messages",
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers = {
            "Authorization": f"Bearer {self.token(groups)}",
            "content-type": "application/json",
            "anthropic-version": "2023-06-01",
            **(headers or {}),
        }
        return requests.post(self.url + path, data=data, headers=all_headers, stream=stream, timeout=30)

    def wait_finished(self, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.finished) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.finished


@pytest.fixture(scope="module")
def standin() -> Iterator[Any]:
    handle = standin_module.start()
    yield handle
    handle.stop()


def _gateway(tmp_path: Path, database_url: str, standin: Any, extra: dict[str, Any] | None = None) -> Any:
    data = base_config(database_url, upstream_url=standin.base_url)
    data["managed"] = {"policies": POLICIES}
    data["timeouts"] = {"ping_interval_ms": 10_000}
    if extra:
        data = deep_merge(data, extra)
    return write_config(tmp_path, data)


@pytest.fixture
def finished(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    original = metering.finish

    def recording(cfg: Any, ticket: Any, usage: Any, status: int, first_byte_ms: float | None = None) -> None:
        calls.append({"ticket": ticket, "usage": usage, "status": status, "first_byte_ms": first_byte_ms})
        original(cfg, ticket, usage, status, first_byte_ms)

    monkeypatch.setattr(metering, "finish", recording)
    return calls


@pytest.fixture
def gw(tmp_path: Path, database_url: str, standin: Any, finished: list[dict[str, Any]]) -> Iterator[Gateway]:
    standin.reset()
    path = _gateway(tmp_path, database_url, standin)
    with live_gateway(path) as live:
        yield Gateway(live.url, path, standin, finished)


def _body(model: str = "claude-sonnet-4-5", stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


def _error(response: requests.Response) -> tuple[int, str, str]:
    payload = response.json()
    assert payload["type"] == "error"
    return response.status_code, payload["error"]["type"], payload["error"]["message"]


# --- translation, byte-for-byte relay, no buffering ------------------------------------


def test_vertex_stream_is_translated_and_relayed_byte_for_byte(gw: Gateway) -> None:
    response = gw.post(
        _body(stream=True, tags={"cost-center": "ml-research"}, safeguards={"mode": "auto"}, future_field=[1, 2]),
        headers={
            "anthropic-beta": "context-1m-2025-08-07,auto-mode-2026-01-01",
            "x-stainless-lang": "js",
            "x-app": "cli",
            "user-agent": "claude-cli/2.1.0",
            "accept": "application/json",
        },
        stream=True,
    )
    received = b"".join(response.iter_content(chunk_size=None))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_gw")
    assert "x-vertex-ai-internal" not in response.headers
    assert "content-encoding" not in response.headers

    (record,) = gw.upstream.requests
    assert record.path == (
        "/v1/projects/test-project/locations/us-east5/publishers/anthropic/models/"
        "claude-sonnet-4-5@20250929:streamRawPredict"
    )
    sent = record.json
    assert "model" not in sent and "tags" not in sent
    assert sent["anthropic_version"] == "vertex-2023-10-16"
    assert sent["safeguards"] == {"mode": "auto"} and sent["future_field"] == [1, 2]
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    headers = {k.lower(): v for k, v in record.headers.items()}
    assert headers["anthropic-beta"] == "context-1m-2025-08-07,auto-mode-2026-01-01"
    assert headers["x-stainless-lang"] == "js"
    assert headers["user-agent"] == "claude-cli/2.1.0"
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers  # the client's bearer never leaves the gateway
    assert "x-app" not in headers

    assert received == bytes(record.sent)  # every event, in order, byte for byte
    assert received.count(b"event: content_block_delta") == 3


def test_first_event_reaches_the_client_before_the_second_is_sent(gw: Gateway) -> None:
    gw.upstream.configure(gap_ms=1500, deltas=1)
    response = gw.post(_body(stream=True), stream=True)
    buffer = b""
    first_at = None
    for chunk in response.iter_content(chunk_size=None):
        buffer += chunk
        if first_at is None and b"\n\n" in buffer:
            first_at = time.monotonic()
    (record,) = gw.upstream.requests
    assert buffer.startswith(b"event: message_start")
    assert first_at is not None
    assert first_at < record.event_times[1], "the first event was held back until the second was sent"
    assert buffer == bytes(record.sent)


def test_usage_is_captured_exactly_including_cache_tokens(gw: Gateway) -> None:
    gw.upstream.configure(
        input_tokens=1234,
        output_tokens=321,
        cache_read_input_tokens=5000,
        cache_creation_5m_input_tokens=200,
        cache_creation_1h_input_tokens=300,
    )
    streamed = gw.post(_body(stream=True), stream=True)
    b"".join(streamed.iter_content(chunk_size=None))
    plain = gw.post(_body(stream=False))
    assert plain.status_code == 200 and plain.json()["usage"]["output_tokens"] == 321
    calls = gw.wait_finished(2)
    assert len(calls) == 2
    for call in calls:
        usage = call["usage"]
        assert (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens,
            usage.cache_creation_5m_input_tokens,
            usage.cache_creation_1h_input_tokens,
        ) == (1234, 321, 5000, 200, 300)
        assert call["status"] == 200
        assert call["first_byte_ms"] is not None and call["first_byte_ms"] >= 0
        info = call["ticket"].info
        assert (info.model, info.upstream, info.upstream_model) == (
            "claude-sonnet-4-5",
            "vertex",
            "claude-sonnet-4-5@20250929",
        )
    assert [c["ticket"].info.stream for c in calls] == [True, False]


def test_client_abort_mid_stream_still_meters_the_full_usage(gw: Gateway) -> None:
    gw.upstream.configure(gap_ms=60, deltas=25, output_tokens=777, input_tokens=42)
    body = json.dumps(_body(stream=True)).encode()
    # Gone after the first event, ~1.5 s before the upstream is done.
    first = post_then_hang_up(gw.url, "/v1/messages", gw.token(), body)
    assert b"200" in first.split(b"\r\n")[0]
    (record,) = gw.upstream.requests
    assert not record.completed
    calls = gw.wait_finished(1, timeout=20)
    assert len(calls) == 1
    assert calls[0]["usage"].output_tokens == 777 and calls[0]["usage"].input_tokens == 42
    assert record.completed  # the gateway read the upstream to its end


def test_gateway_pings_during_upstream_silence(tmp_path: Path, database_url: str, standin: Any) -> None:
    standin.reset()
    standin.configure(gap_ms=700, deltas=1)
    path = _gateway(tmp_path, database_url, standin, {"timeouts": {"ping_interval_ms": 200}})
    with live_gateway(path) as live:
        gw = Gateway(live.url, path, standin, [])
        received = b"".join(gw.post(_body(stream=True), stream=True).iter_content(chunk_size=None))
    (record,) = standin.requests
    ours = b'event: ping\ndata: {"type": "ping"}\n\n'
    assert received.count(ours) >= received.count(b"event: ping") - 1 >= 3
    assert received.replace(ours, b"") == bytes(record.sent).replace(ours, b"")
    assert received.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


# --- policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "model", "allowed"),
    [
        (("ml-research",), "claude-opus-4-5", True),
        (("contractors",), "claude-haiku-4-5", True),
        (("contractors",), "claude-sonnet-4-5", False),
        (("contractors",), "opus", False),
        (("contractors",), "OPUS", False),
        (("contractors",), "Claude-Opus-4-5", False),
        (("contractors",), "claude-opus-4-5-20251101", False),
        (("contractors",), "claude-opus-4-5[1m]", False),
        (("contractors",), "claude-opus-4-5@20251101", False),
        (("support",), "claude-sonnet-4-5-20250929", True),
        (("support",), "claude-haiku-4-5", False),
        ((), "claude-opus-4-5", False),
        (("nobody-knows",), "claude-haiku-4-5", True),
        (("Contractors", "ml-research"), "claude-opus-4-5", True),  # first matching policy: ml
    ],
)
def test_model_policy(gw: Gateway, groups: tuple[str, ...], model: str, allowed: bool) -> None:
    response = gw.post(_body(model=model), groups=groups)
    if allowed:
        assert response.status_code == 200, response.text
        return
    status, kind, message = _error(response)
    assert (status, kind) == (400, "invalid_request_error")
    assert f"'{model}'" in message and "Allowed models:" in message
    assert not gw.upstream.requests


def test_denied_model_error_names_the_allowed_ones(gw: Gateway) -> None:
    _, _, message = _error(gw.post(_body(model="claude-opus-4-5"), groups=("contractors",)))
    assert "contractors" in message and message.endswith("Allowed models: claude-haiku-4-5.")
    _, _, message = _error(gw.post(_body(model="claude-opus-4-5"), groups=()))
    assert message.endswith("Allowed models: claude-sonnet-4-5, claude-haiku-4-5.")


def _tool(name: str) -> dict[str, Any]:
    return {"name": name, "description": "d", "input_schema": {"type": "object"}}


@pytest.mark.parametrize(
    ("groups", "tool"),
    [
        (("support",), "Bash"),  # not in the allow list
        (("support",), "mcp__jira__delete_issue"),  # allowed glob, but denied glob wins
        (("support",), "MCP__JIRA__DELETE_ISSUE"),
        ((), "webfetch"),  # catch-all denies WebFetch, whatever the case
        ((), "WEBFETCH"),
    ],
)
def test_denied_tool_is_rejected_naming_it(gw: Gateway, groups: tuple[str, ...], tool: str) -> None:
    body = _body(tools=[_tool("Read"), _tool(tool)])
    if groups == ("support",):
        body["model"] = "claude-sonnet-4-5"
    status, kind, message = _error(gw.post(body, groups=groups))
    assert (status, kind) == (403, "permission_error")
    assert f"'{tool}'" in message
    assert not gw.upstream.requests


def test_allowed_tools_pass(gw: Gateway) -> None:
    body = _body(tools=[_tool("Read"), _tool("grep"), _tool("mcp__jira__get_issue")])
    assert gw.post(body, groups=("support",)).status_code == 200
    assert [t["name"] for t in gw.upstream.requests[0].json["tools"]] == ["Read", "grep", "mcp__jira__get_issue"]


def test_strip_mode_removes_denied_tools_before_the_upstream(gw: Gateway) -> None:
    body = _body(
        model="claude-haiku-4-5",
        tools=[_tool("bash"), _tool("Read"), _tool("mcp__github__create_pr"), _tool("WebFetch")],
        tool_choice={"type": "tool", "name": "bash"},
    )
    assert gw.post(body, groups=("contractors",)).status_code == 200
    sent = gw.upstream.requests[0].json
    assert [t["name"] for t in sent["tools"]] == ["Read"]
    assert "tool_choice" not in sent

    only_denied = _body(model="claude-haiku-4-5", tools=[_tool("Bash")], tool_choice={"type": "any"})
    assert gw.post(only_denied, groups=("contractors",)).status_code == 200
    sent = gw.upstream.requests[1].json
    assert "tools" not in sent and "tool_choice" not in sent


def test_denied_tool_in_history_is_refused(gw: Gateway) -> None:
    messages = [
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "BASH", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a b"}]},
    ]
    for groups in (("contractors",), ("support",)):
        model = "claude-haiku-4-5" if groups == ("contractors",) else "claude-sonnet-4-5"
        status, kind, message = _error(gw.post({**_body(model=model), "messages": messages}, groups=groups))
        assert (status, kind) == (403, "permission_error") and "'BASH'" in message
    assert gw.post({**_body(), "messages": messages}, groups=("ml-research",)).status_code == 200


def test_no_matching_policy_without_catch_all_is_forbidden(tmp_path: Path, database_url: str, standin: Any) -> None:
    path = _gateway(tmp_path, database_url, standin)
    data = base_config(database_url, upstream_url=standin.base_url)
    data["managed"] = {"policies": POLICIES[:2]}
    path = write_config(tmp_path, data)
    with live_gateway(path) as live:
        gw = Gateway(live.url, path, standin, [])
        status, kind, _ = _error(gw.post(_body(), groups=("eng",)))
    assert (status, kind) == (403, "permission_error")


# --- tags -----------------------------------------------------------------------------


def test_billing_group_tag(gw: Gateway) -> None:
    assert gw.post(_body(tags={"cost-center": "ML-Research"}), groups=("ml-research",)).status_code == 200
    assert gw.post(_body(tags={"cost-center": "finance"}), groups=("ml-research",)).status_code == 200
    calls = gw.wait_finished(2)
    assert [c["ticket"].info.billing_group for c in calls] == ["ml-research", None]
    assert all("tags" not in r.json for r in gw.upstream.requests)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"model": 7, "messages": []}).encode(), "model:"),
        (json.dumps({"messages": []}).encode(), "model:"),
        (json.dumps({"model": "claude-sonnet-4-5", "messages": {"role": "user"}}).encode(), "messages:"),
        (json.dumps({"model": "claude-sonnet-4-5", "messages": [], "stream": "yes"}).encode(), "stream:"),
        (json.dumps({"model": "claude-sonnet-4-5", "messages": [], "stream": 1}).encode(), "stream:"),
        (json.dumps({"model": "claude-nonexistent-9", "messages": []}).encode(), "not allowed"),
        # JSON that Python reads but the upstream request cannot carry: once a 500
        (b'{"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "\\ud83d"}]}', "not valid JSON"),
        (b'{"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "\xff"}]}', "not valid JSON"),
        (b'{"model": "claude-sonnet-4-5", "max_tokens": 1e400, "messages": []}', "max_tokens:"),
        (b'{"model": "claude-sonnet-4-5", "messages": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}", "not valid JSON"),
    ],
)
def test_bad_bodies_get_400(gw: Gateway, body: bytes, needle: str) -> None:
    status, kind, message = _error(gw.post(body))
    assert (status, kind) == (400, "invalid_request_error")
    assert needle in message


def test_values_the_gateway_does_not_read_reach_the_upstream_as_written(gw: Gateway) -> None:
    # Only model, stream, max_tokens and tags are decoded: the rest is relayed as the client's
    # own bytes (numbers, escapes and spacing included), not parsed and encoded again.
    raw = (
        b'{"model":"claude-sonnet-4-5","max_tokens":64,"stream":false,'
        b'"messages":[{"role":"user","content":"caf\\u00e9 \\ud83d\\ude00"}],'
        b'"future_field":[1E400, 1.10, 12345678901234567890123],"tags":{"cost-center":"ml-research"}}'
    )
    assert gw.post(raw).status_code == 200
    (record,) = gw.upstream.requests
    assert b'"messages":[{"role":"user","content":"caf\\u00e9 \\ud83d\\ude00"}]' in record.body
    assert b'"future_field":[1E400, 1.10, 12345678901234567890123]' in record.body
    assert b"tags" not in record.body and record.json["max_tokens"] == 64


def test_huge_and_chunked_bodies(tmp_path: Path, database_url: str, standin: Any) -> None:
    path = _gateway(tmp_path, database_url, standin, {"limits": {"max_request_bytes": 4096}})
    with live_gateway(path) as live:
        gw = Gateway(live.url, path, standin, [])
        huge = _body(messages=[{"role": "user", "content": "x" * 10_000}])
        status, kind, _ = _error(gw.post(huge))
        assert (status, kind) == (413, "request_too_large")

        parts = urlsplit(live.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.putrequest("POST", "/v1/messages")
        conn.putheader("Authorization", f"Bearer {gw.token()}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        payload = json.dumps(_body()).encode()
        conn.send(f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n")
        answer = conn.getresponse()
        assert answer.status == 411
        assert json.loads(answer.read())["error"]["type"] == "invalid_request_error"


def test_bad_bearer_is_401_without_retry(gw: Gateway) -> None:
    response = requests.post(
        gw.url + "/v1/messages", json=_body(), headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert _error(response)[:2] == (401, "authentication_error")
    assert response.headers["x-should-retry"] == "false"


def test_query_string_is_tolerated(gw: Gateway) -> None:
    assert gw.post(_body(), path="/v1/messages?beta=true").status_code == 200


# --- upstream errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "status", "kind", "message"),
    [
        (
            {
                "error_status": 400,
                "error_format": "vertex",
                "error_message": "Request payload size exceeds the limit: 31457280 bytes.",
            },
            400,
            "invalid_request_error",
            "Input is too long.",
        ),
        (
            {
                "error_status": 400,
                "error_type": "invalid_request_error",
                "error_message": "prompt is too long: 250000 tokens > 200000 maximum",
            },
            400,
            "invalid_request_error",
            "prompt is too long: 250000 tokens > 200000 maximum",
        ),
        (
            {"error_status": 429, "error_type": "rate_limit_error", "error_message": "Quota exceeded for test-project"},
            429,
            "rate_limit_error",
            None,
        ),
        (
            {
                "error_status": 429,
                "error_format": "vertex",
                "error_message": "Quota exceeded for aiplatform.googleapis.com in project test-project",
            },
            429,
            "rate_limit_error",
            None,
        ),
        (
            {"error_status": 529, "error_type": "overloaded_error", "error_message": "Overloaded"},
            529,
            "overloaded_error",
            None,
        ),
        (
            {
                "error_status": 500,
                "error_format": "vertex",
                "error_message": "Internal error in projects/test-project/locations/us-east5",
            },
            500,
            "api_error",
            None,
        ),
        (
            {
                "error_status": 403,
                "error_format": "vertex",
                "error_message": "Permission denied on projects/test-project",
            },
            502,
            "api_error",
            None,
        ),
        (
            {
                "error_status": 404,
                "error_format": "vertex",
                "error_message": "Publisher model projects/test-project/... not found",
            },
            404,
            "not_found_error",
            None,
        ),
    ],
)
def test_upstream_errors_are_mapped_and_sanitised(
    gw: Gateway, options: dict[str, Any], status: int, kind: str, message: str | None
) -> None:
    gw.upstream.configure(**options)
    for stream in (False, True):
        response = gw.post(_body(stream=stream))
        got_status, got_kind, got_message = _error(response)
        assert (got_status, got_kind) == (status, kind)
        assert "test-project" not in response.text
        if message is not None:
            assert got_message == message
        if status == 429:
            assert response.headers["retry-after"] == "7"
    calls = gw.wait_finished(2)
    assert [c["status"] for c in calls] == [options["error_status"]] * 2  # reservations released


def test_unreachable_upstream_is_502(tmp_path: Path, database_url: str, finished: list[dict[str, Any]]) -> None:
    data = base_config(database_url, upstream_url="http://127.0.0.1:9/v1")
    path = write_config(tmp_path, data)
    with live_gateway(path) as live:
        gw = Gateway(live.url, path, None, finished)
        assert _error(gw.post(_body()))[:2] == (502, "api_error")
    assert [c["status"] for c in finished] == [502]


# --- the anthropic upstream ----------------------------------------------------------------


def test_anthropic_upstream_routing_and_headers(
    tmp_path: Path, database_url: str, standin: Any, finished: list[dict[str, Any]]
) -> None:
    standin.reset()
    standin.configure(api_key="sk-ant-standin-key")
    data = base_config(database_url, upstream_url=standin.base_url)
    data["upstreams"].insert(
        0,
        {
            "name": "anthropic",
            "provider": "anthropic",
            "base_url": standin.origin,
            "auth": {"api_key": "sk-ant-standin-key"},
            "models": ["claude-haiku-*"],
        },
    )
    path = write_config(tmp_path, data)
    with live_gateway(path) as live:
        gw = Gateway(live.url, path, standin, finished)
        response = gw.post(
            _body(model="claude-haiku-4-5-20251001", tags={"cost-center": "x"}),
            path="/v1/messages?beta=true",
            headers={"anthropic-beta": "b1"},
        )
        assert response.status_code == 200, response.text
        for header in ("anthropic-ratelimit-requests-limit", "anthropic-organization-id"):
            assert header not in response.headers
        assert response.headers["request-id"].startswith("req_gw")
        streamed = gw.post(_body(model="claude-sonnet-4-5", stream=True), stream=True)
        b"".join(streamed.iter_content(chunk_size=None))
        count = gw.post(_body(model="claude-haiku-4-5"), path="/v1/messages/count_tokens")
        assert count.status_code == 200 and count.json()["input_tokens"] > 0
    first, second, third = standin.requests
    assert first.url == "/v1/messages?beta=true"
    assert first.json["model"] == "claude-haiku-4-5-20251001" and "tags" not in first.json
    assert first.headers["x-api-key"] == "sk-ant-standin-key" and first.headers["anthropic-beta"] == "b1"
    assert "Authorization" not in first.headers
    assert second.path.endswith("claude-sonnet-4-5@20250929:streamRawPredict")  # the vertex upstream
    assert third.path == "/v1/messages/count_tokens"


def test_count_tokens_on_vertex(gw: Gateway) -> None:
    gw.upstream.configure(count_tokens=4242)
    response = gw.post(_body(tags={"cost-center": "ml-research"}), path="/v1/messages/count_tokens")
    assert response.status_code == 200 and response.json() == {"input_tokens": 4242}
    (record,) = gw.upstream.requests
    assert (
        record.path
        == "/v1/projects/test-project/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict"
    )
    assert record.json["model"] == "claude-sonnet-4-5@20250929"
    assert record.json["anthropic_version"] == "vertex-2023-10-16" and "tags" not in record.json


# --- a real client --------------------------------------------------------------------------


def test_the_anthropic_sdk_streams_and_counts_tokens(gw: Gateway) -> None:
    import anthropic

    gw.upstream.configure(deltas=4, text="ab", input_tokens=11, output_tokens=5)
    client = anthropic.Anthropic(base_url=gw.url, auth_token=gw.token(), api_key=None, max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "abababab"
    assert final.usage.input_tokens == 11 and final.usage.output_tokens == 5
    counted = client.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens > 0
    contractor = anthropic.Anthropic(base_url=gw.url, auth_token=gw.token(("contractors",)), max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="not allowed"):
        contractor.messages.create(model="claude-opus-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])


# --- models -----------------------------------------------------------------------------


def test_models_list_shows_the_callers_models(gw: Gateway) -> None:
    headers = {"Authorization": f"Bearer {gw.token(('contractors',))}"}
    listing = requests.get(gw.url + "/v1/models", headers=headers, timeout=10).json()
    # gateway.yaml's models first, then the rest of the catalogue the policy allows, newest first.
    assert listing["data"][0] == {
        "type": "model",
        "id": "claude-haiku-4-5",
        "display_name": "Haiku 4.5",
        "created_at": "2025-01-01T00:00:00Z",
    }
    assert [m["id"] for m in listing["data"]] == ["claude-haiku-4-5", "claude-haiku-5-5", "claude-3-5-haiku"]
    assert (listing["has_more"], listing["first_id"], listing["last_id"]) == (
        False,
        "claude-haiku-4-5",
        "claude-3-5-haiku",
    )
    one = requests.get(gw.url + "/v1/models/claude-haiku-4-5", headers=headers, timeout=10)
    assert one.status_code == 200 and one.json()["display_name"] == "Haiku 4.5"
    hidden = requests.get(gw.url + "/v1/models/claude-opus-4-5", headers=headers, timeout=10)
    assert _error(hidden)[:2] == (404, "not_found_error")
    everyone = requests.get(gw.url + "/v1/models", headers={"Authorization": f"Bearer {gw.token(())}"}, timeout=10)
    assert [m["id"] for m in everyone.json()["data"]] == [
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-sonnet-5-5",
        "claude-sonnet-5",
        "claude-sonnet-4-6",
        "claude-sonnet-4-0",
        "claude-3-7-sonnet",
        "claude-3-5-sonnet",
        "claude-haiku-5-5",
        "claude-3-5-haiku",
    ]


# --- Google credential (ADC through the metadata server stand-in) ---------------------------


def test_vertex_uses_adc_once_per_instance(
    tmp_path: Path, database_url: str, standin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.proxy.upstreams import vertex

    standin.reset()
    standin.configure(bearer="metadata")
    host = urlsplit(standin.origin).netloc
    monkeypatch.setenv("GCE_METADATA_HOST", host)
    monkeypatch.setenv("GCE_METADATA_IP", host)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    vertex.CREDENTIAL.reset()
    data = base_config(database_url, upstream_url=standin.base_url)
    data["upstreams"][0]["auth"] = {}
    path = write_config(tmp_path, data)
    try:
        with live_gateway(path) as live:
            gw = Gateway(live.url, path, standin, [])
            threads = [threading.Thread(target=lambda: gw.post(_body())) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert gw.post(_body()).status_code == 200
    finally:
        vertex.CREDENTIAL.reset()
    assert standin.stats()["metadata_tokens"] == 1
    assert all(r.headers["Authorization"].startswith("Bearer standin-access-token-") for r in standin.requests)
    assert [r.status for r in standin.requests] == [200] * 5
