"""Tool rules, `explain`, the anonymous-upstream config rule, the HTTP/1.1 client and SSE usage parsing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import base_config, write_config

from common import config
from common.config import ConfigError, Tools
from common.core.errors import GatewayError
from common.core.usage import Usage
from common.policy import rules as policy
from common.proxy import http1
from common.proxy.sse import UsageScanner

ROOT_DIR = Path(__file__).resolve().parents[2]

POLICIES = [
    {"name": "ml", "match": {"groups": ["ml-research"]}, "settings": {"availableModels": ["opus", "sonnet"]}},
    {
        "name": "contractors",
        "match": {"groups": ["contractors"]},
        "settings": {"availableModels": ["haiku"]},
        "tools": {"deny": ["WebFetch", "Bash", "mcp__*"], "mode": "strip"},
    },
    {"name": "everyone", "settings": {"availableModels": ["sonnet", "haiku"]}, "tools": {"deny": ["WebFetch"]}},
]


def _cfg(**extra: Any) -> config.Config:
    data = base_config("postgresql://postgres@127.0.0.1:9/unused")
    data["managed"] = {"policies": POLICIES}
    data.update(extra)
    import yaml

    return config.parse(yaml.safe_dump(data)).config


def test_tool_rules_are_case_insensitive_globs_and_deny_wins() -> None:
    rules = Tools(allow=["Read", "mcp__jira__*"], deny=["mcp__jira__delete*"])
    assert policy.tool_allowed(rules, "read") and policy.tool_allowed(rules, "MCP__Jira__get")
    assert not policy.tool_allowed(rules, "Bash")
    assert not policy.tool_allowed(rules, "mcp__JIRA__DELETE_issue")
    assert policy.tool_allowed(Tools(), "anything")


@given(st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != ""))
def test_a_denied_name_is_denied_in_any_case(name: str) -> None:
    rules = Tools(deny=[name])
    for variant in (name, name.upper(), name.lower(), name.swapcase()):
        if variant.lower() == name.lower() and not any(c in name for c in "*?["):
            assert not policy.tool_allowed(rules, variant)


def test_apply_tools_reject_and_strip() -> None:
    cfg = _cfg()
    index, contractors = policy.resolve(cfg, ["contractors"])  # type: ignore[misc]
    body: dict[str, Any] = {"tools": [{"name": "BASH"}, {"name": "Read"}], "messages": []}
    assert policy.apply_tools(index, contractors, body) == ["BASH"]
    assert body["tools"] == [{"name": "Read"}]
    index, everyone = policy.resolve(cfg, [])  # type: ignore[misc]
    with pytest.raises(GatewayError) as caught:
        policy.apply_tools(index, everyone, {"tools": [{"name": "webFetch"}], "messages": []})
    assert (caught.value.status, caught.value.error_type) == (403, "permission_error")
    assert "'webFetch'" in caught.value.message and "everyone" in caught.value.message


def test_explain() -> None:
    cfg = _cfg()
    out = policy.explain(cfg, "c@example.com", ["Contractors"])
    assert out["policy"] == "contractors" and out["policy_index"] == 1
    assert out["models"] == {"entries": ["haiku"], "allowed": ["claude-haiku-4-5"]}
    assert out["tools"] == {"allow": [], "deny": ["WebFetch", "Bash", "mcp__*"], "mode": "strip"}
    assert "match.groups contractors" in out["reason"]
    fallback = policy.explain(cfg, "x@example.com", [])
    assert fallback["policy"] == "everyone" and "catch-all" in fallback["reason"]
    assert fallback["models"]["allowed"] == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    no_catch_all = _cfg(managed={"policies": POLICIES[:2]})
    assert policy.explain(no_catch_all, "x@example.com", ["eng"])["policy"] is None


def test_explain_command(tmp_path: Path) -> None:
    data = base_config("postgresql://postgres@127.0.0.1:9/unused")
    data["managed"] = {"policies": POLICIES}
    path = write_config(tmp_path, data)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "explain",
            "--email",
            "a@example.com",
            "--groups",
            "ml-research,x",
            "--config",
            str(path),
        ],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["policy"] == "ml" and out["models"]["allowed"] == ["claude-opus-4-5", "claude-sonnet-4-5"]


def test_anonymous_vertex_auth_needs_a_loopback_base_url() -> None:
    data = base_config("postgresql://postgres@127.0.0.1:9/unused")
    data["upstreams"][0]["base_url"] = "https://vertex.example.com/v1"
    import yaml

    with pytest.raises(ConfigError) as caught:
        config.parse(yaml.safe_dump(data))
    assert any("upstreams[0].auth.anonymous" in p and "loopback" in p for p in caught.value.problems)
    del data["upstreams"][0]["base_url"]
    with pytest.raises(ConfigError):
        config.parse(yaml.safe_dump(data))


# --- SSE usage scanning ---------------------------------------------------------------------


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


@given(st.lists(st.integers(min_value=1, max_value=600), max_size=12))
def test_usage_scanner_is_indifferent_to_chunk_boundaries(cuts: list[int]) -> None:
    stream = _events()
    scanner = UsageScanner(Usage())
    position = 0
    for cut in sorted(set(cuts)):
        scanner.feed(stream[position:cut])
        position = max(position, cut)
    scanner.feed(stream[position:])
    assert scanner.usage == Usage(10, 99, 3, 4, 6)


# --- the HTTP/1.1 client ---------------------------------------------------------------------


def test_http1_client_replaces_a_connection_the_upstream_closed_while_idle() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        for _ in range(3):
            conn, _ = listener.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            while len(rest) < length:
                rest += conn.recv(65536)
            seen.append(rest)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: 1\r\n\r\nok")
            conn.close()  # without announcing it: the pooled connection goes stale

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = http1.Client(maxsize=4)
    for i in range(3):
        response = client.post(
            f"http://127.0.0.1:{port}/x", {"content-type": "application/json"}, b'{"n":%d}' % i, 2, 2
        )
        assert (response.status, response.read(), response.headers["x-up"]) == (200, b"ok", "1")
    thread.join(timeout=5)
    listener.close()
    assert seen == [b'{"n":0}', b'{"n":1}', b'{"n":2}']


def test_http1_client_errors() -> None:
    client = http1.Client(maxsize=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(http1.ConnectFailed):
        client.post(f"http://127.0.0.1:{port}/", {}, b"", 1, 1)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(http1.ResponseTimeout):  # accepts (backlog) but never answers
            client.post(f"http://127.0.0.1:{listener.getsockname()[1]}/", {}, b"{}", 1, 0.3)
    finally:
        listener.close()


def _serve_once(script: list[bytes | float]) -> int:
    """A raw HTTP server answering one request with `script` (bytes sent, floats slept)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        for step in script:
            if isinstance(step, float):
                time.sleep(step)
            else:
                conn.sendall(step)
        time.sleep(0.5)
        conn.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1])


def test_http1_stream_reports_silence_and_resumes_mid_chunk() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    port = _serve_once([head, b"5\r\nhel", 0.35, b"lo\r\n", b"3\r\nabc\r\n0\r\n\r\n"])
    response = http1.Client(maxsize=1).post(f"http://127.0.0.1:{port}/", {}, b"{}", 2, 2)
    got = list(response.iter_chunks(idle_seconds=0.1, silence_seconds=5))
    assert [c for c in got if c] == [b"hello", b"abc"]
    assert got.count(b"") >= 2  # silent intervals were reported, mid-chunk, without losing bytes


def test_http1_stream_silence_limit() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    port = _serve_once([head, b"12345", 1.5, b"67890"])
    response = http1.Client(maxsize=1).post(f"http://127.0.0.1:{port}/", {}, b"{}", 2, 2)
    with pytest.raises(http1.ResponseTimeout):
        list(response.iter_chunks(idle_seconds=0.1, silence_seconds=0.5))
