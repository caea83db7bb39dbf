"""Fixtures every real-CLI module shares."""

from __future__ import annotations

import subprocess
from pathlib import Path

import claude_code as cc
import pytest


@pytest.fixture(scope="module")
def claude() -> Path:
    """The pinned real CLI; skipped (failed under CI=true) when a prerequisite is missing."""
    cc.prerequisites()
    try:
        binary: Path = cc.ensure_cli()
        return binary
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        cc.require(False, f"cannot fetch Claude Code {cc.VERSION} with npm: {exc}")
        raise
