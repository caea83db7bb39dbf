"""The request the real Claude Code CLI sends, captured when a test or the benchmark runs (never committed).

`captured(version)` runs the CLI once as `claude -p` against the project's
upstream stand-in (`gateway.standins.upstream`, Anthropic's wire format on
loopback), which records the `/v1/messages` request and streams a valid reply.
Inference only: `CLAUDE_CODE_USE_GATEWAY=1` with `ANTHROPIC_BASE_URL` and a
dummy `ANTHROPIC_AUTH_TOKEN` skip the CLI's sign-in, which a capture does not
need. The request is cached per CLI version under `.cache/claude-capture/`
(git-ignored, mode 600: it holds the CLI's system prompt and our prompt), so a
machine captures once; its text is never printed or logged, only its `shape()`.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import claude_cli

CACHE = Path(os.environ.get("CLAUDE_CAPTURE_CACHE", claude_cli.ROOT / ".cache" / "claude-capture"))
PROMPT = "Reply with the single word: captured."
REPLY_TEXT = "captured"
_KEPT_OUT = frozenset({"authorization", "x-api-key", "host", "content-length", "connection"})


@dataclass(frozen=True)
class CapturedRequest:
    """One `/v1/messages` request as the CLI sent it (header names lower-cased, no credential)."""

    version: str
    path: str  # as the CLI asked for it, e.g. /v1/messages?beta=true
    headers: dict[str, str]
    body: dict[str, Any]
    size: int  # bytes of the body as sent

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            "size": self.size,
        }


def record(claude: Path, version: str, timeout: float = 120) -> CapturedRequest:
    """Run `claude -p` once against the recording stand-in; the main `/v1/messages` request it sent."""
    from gateway.standins import upstream as standin

    handle = standin.start(text=REPLY_TEXT, deltas=1)
    try:
        with tempfile.TemporaryDirectory(prefix="claude-capture-") as scratch:
            home, work = Path(scratch) / "home", Path(scratch) / "work"
            home.mkdir()
            work.mkdir()
            env = {
                "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
                "HOME": str(home),
                "TERM": "xterm-256color",
                "LANG": "C.UTF-8",
                "DISABLE_AUTOUPDATER": "1",
                "NO_PROXY": "127.0.0.1,localhost",
                "CLAUDE_CODE_USE_GATEWAY": "1",
                "ANTHROPIC_BASE_URL": handle.origin,
                "ANTHROPIC_AUTH_TOKEN": "capture-not-a-secret",
            }
            done = subprocess.run(
                [str(claude), "-p", PROMPT],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        records = [r for r in handle.requests if r.path == "/v1/messages" and isinstance(r.json, dict)]
    finally:
        handle.stop()
    if done.returncode != 0 or REPLY_TEXT not in done.stdout:
        raise RuntimeError(f"claude -p against the stand-in failed ({done.returncode}): {done.stderr[-1500:]}")
    kept = [
        CapturedRequest(
            version,
            r.url,
            {k.lower(): v for k, v in r.headers.items() if k.lower() not in _KEPT_OUT},
            r.json,
            len(r.body),
        )
        for r in records
    ]
    # The main request is the one that carries the tools (side requests, if any, carry none).
    main = [r for r in kept if r.body.get("tools")] or kept
    if not main:
        raise RuntimeError("claude -p sent no /v1/messages request to the stand-in")
    return max(main, key=lambda r: r.size)


def captured(version: str = claude_cli.VERSION, cache: Path = CACHE) -> CapturedRequest:
    """The CLI `version`'s request, from the cache or captured now (fetching the CLI if needed)."""
    cached = cache / f"{version}.json"
    if cached.is_file():
        data = json.loads(cached.read_text(encoding="utf-8"))
        return CapturedRequest(version, data["path"], data["headers"], data["body"], data["size"])
    claude = claude_cli.ensure(version)
    cache.mkdir(parents=True, exist_ok=True)
    with claude_cli.file_lock(cache / ".capture.lock", timeout=300):  # parallel suites share the cache
        if not cached.is_file():
            found = record(claude, version)
            staged = cached.with_suffix(".tmp")
            staged.write_text(json.dumps(found.to_json()), encoding="utf-8")
            staged.chmod(0o600)
            os.replace(staged, cached)
    return captured(version, cache)


def shape(found: CapturedRequest) -> dict[str, Any]:
    """What a report may say about the request: sizes and settings, never its text."""
    body = found.body
    thinking = body.get("thinking")
    return {
        "cli_version": found.version,
        "bytes": found.size,
        "tools": len(body.get("tools") or []),
        "messages": len(body.get("messages") or []),
        "max_tokens": body.get("max_tokens"),
        "model": body.get("model"),
        "stream": body.get("stream"),
        "thinking": thinking.get("type") if isinstance(thinking, dict) else thinking,
        "output_config": body.get("output_config"),
        "betas": [b for b in found.headers.get("anthropic-beta", "").split(",") if b],
        "fields": sorted(body),
        "path": found.path,
        "user_agent": found.headers.get("user-agent"),
    }
