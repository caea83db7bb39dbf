"""Running the schemathesis CLI against a live gateway's admin OpenAPI document."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from support import ADMIN_WRITE_KEY


def run(base_url: str, cwd: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`schemathesis run` over the admin API with the write key and `not_a_server_error`; `options` add to it."""
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    assert exe, "schemathesis is in requirements-dev.txt"
    argv = [exe, "run", f"{base_url}/v1/organizations/openapi.json", "--url", base_url]
    argv += ["--checks", "not_a_server_error", "-H", f"x-api-key: {ADMIN_WRITE_KEY}", "--generation-database", "none"]
    # One worker: CPython 3.11 can raise "AST constructor recursion depth mismatch" parsing in 2 threads.
    argv += ["--workers", "1", *options]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )
