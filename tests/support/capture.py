"""The request the real Claude Code CLI sends, captured at test time (never committed).

`real_request()` runs the pinned CLI (`tests/e2e/claude_code.py` fetches it into
`.cache/claude-code/<version>/claude`) once as `claude -p` against a loopback
stand-in that records the `/v1/messages` request and answers a minimal valid
SSE message. Inference only: `ANTHROPIC_BASE_URL` + `ANTHROPIC_AUTH_TOKEN`
(with `CLAUDE_CODE_USE_GATEWAY=1`) skip the CLI's own sign-in, which a capture
does not need. The body and headers are cached per CLI version under
`.cache/claude-capture/` (git-ignored), so a suite captures once; the prompt
text the CLI wrote into the body stays there and is never printed or logged.

Without the CLI (or npm to fetch it) this is a skip; under `CI=true` a failure.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CLAUDE_CAPTURE_CACHE", ROOT / ".cache" / "claude-capture"))
PROMPT = "Reply with the single word: captured."
REPLY_TEXT = "captured"
_HEADERS_KEPT_OUT = frozenset({"authorization", "x-api-key", "host", "content-length", "connection"})


@dataclass(frozen=True)
class Captured:
    version: str
    path: str  # as the CLI asked for it, e.g. /v1/messages?beta=true
    headers: dict[str, str]  # lower-cased; no credential
    body: dict[str, Any]
    size: int  # bytes of the body as sent


def _sse(model: str) -> bytes:
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_capture",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 1, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": REPLY_TEXT}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 1},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # the CLI may probe other endpoints: a 404 sends it to its defaults
        self._reply(404, b'{"type":"error","error":{"type":"not_found_error","message":"stand-in"}}')

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        if not self.path.startswith("/v1/messages") or self.path.startswith("/v1/messages/count_tokens"):
            self._reply(404, b'{"type":"error","error":{"type":"not_found_error","message":"stand-in"}}')
            return
        body = json.loads(raw)
        with self.server.lock:
            self.server.requests.append(
                Captured(
                    version="",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items() if k.lower() not in _HEADERS_KEPT_OUT},
                    body=body,
                    size=len(raw),
                )
            )
        if body.get("stream"):
            self._reply(200, _sse(str(body.get("model"))), "text/event-stream")
            return
        message = {
            "id": "msg_capture",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": REPLY_TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
        self._reply(200, json.dumps(message).encode())

    def log_message(self, format: str, *args: Any) -> None:  # quiet: requests hold prompt text
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.lock = threading.Lock()
        self.requests: list[Captured] = []


def _fail_or_skip(why: str) -> None:
    from e2e import claude_code as cc

    cc.require(False, why)


def capture(claude: Path, version: str, timeout: float = 120) -> Captured:
    """Run `claude -p` once against the recorder; the main `/v1/messages` request it sent."""
    from e2e import claude_code as cc

    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with tempfile.TemporaryDirectory(prefix="claude-capture-") as scratch:
            home, work = Path(scratch) / "home", Path(scratch) / "work"
            home.mkdir()
            work.mkdir()
            env = {
                "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}",
                "ANTHROPIC_AUTH_TOKEN": "capture-not-a-secret",
                "CLAUDE_CODE_USE_GATEWAY": "1",
            }
            done = cc.run_print(claude, home, work, PROMPT, timeout=timeout, extra_env=env)
    finally:
        server.shutdown()
        server.server_close()
    if done.returncode != 0 or REPLY_TEXT not in done.stdout:
        raise AssertionError(f"claude -p against the recorder failed ({done.returncode}): {done.stderr[-1500:]}")
    # The main request is the one that carries the tools (side requests, if any, carry none).
    main = [r for r in server.requests if r.body.get("tools")] or server.requests
    if not main:
        raise AssertionError("claude -p sent no /v1/messages request to the recorder")
    first = main[0]
    return Captured(version, first.path, first.headers, first.body, first.size)


def captured(version: str | None = None) -> Captured:
    """The pinned CLI's request, from `.cache/` or captured now (once per CLI version)."""
    from e2e import claude_code as cc

    version = version or cc.VERSION
    cached = CACHE / f"{version}.json"
    if cached.is_file():
        data = json.loads(cached.read_text(encoding="utf-8"))
        return Captured(version, data["path"], data["headers"], data["body"], data["size"])
    try:
        claude = cc.ensure_cli(version)
    except (RuntimeError, OSError, TimeoutError) as exc:
        _fail_or_skip(f"the Claude Code CLI {version} is not available: {exc}")
        raise  # unreachable: require() skips or fails
    CACHE.mkdir(parents=True, exist_ok=True)
    # One capture per machine at a time (parallel suites share the cache).
    with (CACHE / ".capture.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not cached.is_file():
            found = capture(claude, version)
            staged = cached.with_suffix(".tmp")
            staged.write_text(
                json.dumps({"path": found.path, "headers": found.headers, "body": found.body, "size": found.size}),
                encoding="utf-8",
            )
            staged.chmod(0o600)  # it holds the CLI's system prompt and our prompt text
            os.replace(staged, cached)
    return captured(version)


def real_request() -> dict[str, Any]:
    """A fresh copy of the body the pinned CLI sends for `claude -p` (callers may change it)."""
    body: dict[str, Any] = json.loads(json.dumps(captured().body))
    return body


def real_headers() -> dict[str, str]:
    """The headers it sent with it (lower-cased, without its credential, Host or Content-Length)."""
    return dict(captured().headers)


def shape(found: Captured | None = None) -> dict[str, Any]:
    """What a report may say about the request: sizes and settings, never its text."""
    found = found or captured()
    body = found.body
    return {
        "cli_version": found.version,
        "bytes": found.size,
        "tools": len(body.get("tools") or []),
        "messages": len(body.get("messages") or []),
        "max_tokens": body.get("max_tokens"),
        "model": body.get("model"),
        "stream": body.get("stream"),
        "thinking": body.get("thinking"),
        "betas": found.headers.get("anthropic-beta", "").split(","),
    }


@pytest.fixture
def real_cli_request() -> dict[str, Any]:
    """Fixture form of `real_request()` (import it into a test module or conftest to use it)."""
    return real_request()
