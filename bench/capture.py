"""The request the real Claude Code CLI sends, captured at bench time (never committed).

`capture(version, cache_dir)` runs the pinned native CLI (`claude -p "<a short
coding question>"`, fetched with `npm pack` into `<cache_dir>/<version>/claude`
as tests/e2e/claude_code.py does) in gateway mode against a loopback recording
server, and returns the `/v1/messages` request it sent: headers and JSON body.
The recorder answers a valid SSE reply so the CLI finishes normally. The
capture is cached as `<cache_dir>/<version>/captured-request.json` (ignored by
git: it holds the CLI's prompt text) and reused by later runs.

The CLI runs with a throwaway HOME and working directory and only the
environment it needs: `CLAUDE_CODE_USE_GATEWAY=1`, `ANTHROPIC_BASE_URL`,
`ANTHROPIC_AUTH_TOKEN` (a dummy), `DISABLE_AUTOUPDATER=1` (see
/work/shared/E2E.md). Nothing leaves loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PACKAGE = "@anthropic-ai/claude-code-linux-x64"  # the native binary, no Node needed to run it
PROMPT = "In Python, how do I reverse a list in place? One sentence."
CACHE_NAME = "captured-request.json"
AUTH_TOKEN = "bench-capture-dummy-token"  # noqa: S105 (never valid anywhere)
# Transport headers of this one connection: not part of the request's shape.
_TRANSPORT = frozenset({"host", "content-length", "connection", "authorization", "x-api-key"})


@dataclass(frozen=True)
class CapturedRequest:
    """One `/v1/messages` request as the CLI sent it (header names lower-cased)."""

    headers: dict[str, str]
    body: dict[str, Any]
    path: str = field(default="/v1/messages")  # with the query the CLI used (`?beta=true`)

    def to_json(self) -> dict[str, Any]:
        return {"headers": self.headers, "body": self.body, "path": self.path}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CapturedRequest:
        return cls(headers=dict(data["headers"]), body=dict(data["body"]), path=str(data.get("path", "/v1/messages")))


def capture(version: str, cache_dir: Path) -> CapturedRequest:
    """The CLI `version`'s main-model request, from the cache or captured now."""
    cache_dir = cache_dir.resolve()
    cached = cache_dir / version / CACHE_NAME
    if cached.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return CapturedRequest.from_json(json.loads(cached.read_text()))
    found = record_cli_request(ensure_cli(version, cache_dir))
    staged = cached.with_suffix(".tmp")
    staged.write_text(json.dumps(found.to_json()))
    os.replace(staged, cached)
    return found


def shape(captured: CapturedRequest) -> dict[str, Any]:
    """What the request looks like, without its text (safe to report and commit)."""
    body = captured.body
    tools = body.get("tools") or []
    thinking = body.get("thinking")
    return {
        "bytes": len(json.dumps(body, separators=(",", ":")).encode()),
        "model": body.get("model"),
        "max_tokens": body.get("max_tokens"),
        "stream": body.get("stream"),
        "tools": len(tools),
        "thinking": thinking.get("type") if isinstance(thinking, dict) else thinking,
        "output_config": body.get("output_config"),
        "messages": len(body.get("messages") or []),
        "betas": [b for b in captured.headers.get("anthropic-beta", "").split(",") if b],
        "fields": sorted(body),
        "path": captured.path,
        "user_agent": captured.headers.get("user-agent"),
    }


# --- the CLI ------------------------------------------------------------------------------


def ensure_cli(version: str, cache_dir: Path) -> Path:
    """`<cache_dir>/<version>/claude`, fetched with `npm pack` on first use."""
    binary = cache_dir / version / "claude"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: cannot fetch the Claude Code CLI to capture its request")
    binary.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fetch-", dir=cache_dir))
    try:
        packed = subprocess.run(
            [npm, "pack", "--silent", "--prefer-offline", f"{PACKAGE}@{version}"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if packed.returncode != 0:
            raise RuntimeError(f"npm pack {PACKAGE}@{version} failed: {packed.stderr.strip()[-1000:]}")
        with tarfile.open(work / packed.stdout.strip().splitlines()[-1]) as archive:
            source = archive.extractfile(archive.getmember("package/claude"))
            assert source is not None
            staged = work / "claude"
            with staged.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        staged.chmod(0o755)
        os.replace(staged, binary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return binary


def record_cli_request(binary: Path, prompt: str = PROMPT, timeout: float = 120) -> CapturedRequest:
    """Run `claude -p prompt` against a recorder on loopback; its largest `/v1/messages` POST."""
    with recorder() as (base_url, seen), tempfile.TemporaryDirectory(prefix="bench-capture-") as scratch:
        home, cwd = Path(scratch) / "home", Path(scratch) / "work"
        home.mkdir()
        cwd.mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "TERM": "xterm-256color",
            "LANG": "C.UTF-8",
            "DISABLE_AUTOUPDATER": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "CLAUDE_CODE_USE_GATEWAY": "1",
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_AUTH_TOKEN": AUTH_TOKEN,
        }
        done = subprocess.run(
            [str(binary), "-p", prompt],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        messages = [r for r in seen if r.path.split("?")[0] == "/v1/messages"]
        if not messages:
            raise RuntimeError(
                f"claude -p sent no /v1/messages request (exit {done.returncode}):\n"
                f"stdout: {done.stdout[-1500:]}\nstderr: {done.stderr[-1500:]}"
            )
        return max(messages, key=lambda r: len(json.dumps(r.body)))


# --- the recorder -------------------------------------------------------------------------


def sse_reply(model: str, text: str = "Call `items.reverse()`.") -> bytes:
    """A complete, valid Messages stream (message_start … message_stop)."""
    usage = {"input_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_bench_capture",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage,
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 8},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


def _handler(seen: list[CapturedRequest]) -> type[BaseHTTPRequestHandler]:
    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, content_type: str, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._send(404, "application/json", b'{"type":"error","error":{"type":"not_found_error","message":"no"}}')

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            path = self.path.split("?")[0]
            if path == "/v1/messages/count_tokens":
                self._send(200, "application/json", b'{"input_tokens": 100}')
                return
            if path != "/v1/messages":
                self._send(200, "application/json", b"{}")  # telemetry and the like: accepted, dropped
                return
            headers = {k.lower(): v for k, v in self.headers.items() if k.lower() not in _TRANSPORT}
            seen.append(CapturedRequest(headers=headers, body=body, path=self.path))
            model = str(body.get("model", "claude"))
            if body.get("stream"):
                self._send(200, "text/event-stream", sse_reply(model))
                return
            message = {
                "id": "msg_bench_capture",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": "ok"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 1},
            }
            self._send(200, "application/json", json.dumps(message).encode())

    return Recorder


@contextlib.contextmanager
def recorder() -> Iterator[tuple[str, list[CapturedRequest]]]:
    """A recording Messages server on 127.0.0.1: (base URL, the requests it has seen)."""
    seen: list[CapturedRequest] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(seen))
    thread = threading.Thread(target=server.serve_forever, name="bench-capture", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
