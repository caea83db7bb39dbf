"""The request the real Claude Code CLI sends, captured at test time (never committed).

`real_request()` runs the pinned CLI (`tests/e2e/claude_code.py` fetches it into
`.cache/claude-code/<version>/claude`) once as `claude -p` against the project's
upstream stand-in (`gateway.standins.upstream`, Anthropic's wire format on
loopback), which records the `/v1/messages` request and streams a valid reply. Inference only: `ANTHROPIC_BASE_URL` + `ANTHROPIC_AUTH_TOKEN`
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
from dataclasses import dataclass
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


def _fail_or_skip(why: str) -> None:
    from e2e import claude_code as cc

    cc.require(False, why)


def capture(claude: Path, version: str, timeout: float = 120) -> Captured:
    """Run `claude -p` once against the recorder; the main `/v1/messages` request it sent."""
    from e2e import claude_code as cc

    from gateway.standins import upstream as standin

    handle = standin.start(text=REPLY_TEXT, deltas=1)
    try:
        with tempfile.TemporaryDirectory(prefix="claude-capture-") as scratch:
            home, work = Path(scratch) / "home", Path(scratch) / "work"
            home.mkdir()
            work.mkdir()
            env = {
                "ANTHROPIC_BASE_URL": handle.origin,
                "ANTHROPIC_AUTH_TOKEN": "capture-not-a-secret",
                "CLAUDE_CODE_USE_GATEWAY": "1",
            }
            done = cc.run_print(claude, home, work, PROMPT, timeout=timeout, extra_env=env)
        records = [r for r in handle.requests if r.path == "/v1/messages" and isinstance(r.json, dict)]
    finally:
        handle.stop()
    if done.returncode != 0 or REPLY_TEXT not in done.stdout:
        raise AssertionError(f"claude -p against the stand-in failed ({done.returncode}): {done.stderr[-1500:]}")
    kept = [
        Captured(
            version,
            r.url,
            {k.lower(): v for k, v in r.headers.items() if k.lower() not in _HEADERS_KEPT_OUT},
            r.json,
            len(r.body),
        )
        for r in records
    ]
    # The main request is the one that carries the tools (side requests, if any, carry none).
    main = [r for r in kept if r.body.get("tools")] or kept
    if not main:
        raise AssertionError("claude -p sent no /v1/messages request to the stand-in")
    return main[0]


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
