"""The real CLI's request for tests: `gateway.capture` with the suite's skip/fail rule.

Without the CLI (or npm to fetch it) a test that needs the capture is skipped
locally and fails under `CI=true`, like the end-to-end tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway import capture, claude_cli


def captured(version: str = claude_cli.VERSION) -> capture.CapturedRequest:
    """The pinned CLI's request (captured once per machine and version)."""
    from e2e import claude_code as cc

    try:
        return capture.captured(version)
    except (RuntimeError, OSError, TimeoutError) as exc:
        cc.require(False, f"the request of Claude Code {version} could not be captured: {exc}")
        raise  # unreachable: require() skips or fails


def real_request() -> dict[str, Any]:
    """A fresh copy of the body the pinned CLI sends for `claude -p` (callers may change it)."""
    body: dict[str, Any] = json.loads(json.dumps(captured().body))
    return body


def real_headers() -> dict[str, str]:
    """The headers it sent with it (lower-cased, without its credential, Host or Content-Length)."""
    return dict(captured().headers)


def shape() -> dict[str, Any]:
    return capture.shape(captured())


@pytest.fixture
def real_cli_request() -> dict[str, Any]:
    """Fixture form of `real_request()` (import it into a test module or conftest to use it)."""
    return real_request()
