"""The real Claude Code CLI accepts `python -m gateway onboard`'s output as managed settings.

Written to `/etc/claude-code/managed-settings.json` (the only path the CLI reads
on Linux; root needed), the settings must switch a fresh `claude -p` into the
Cloud gateway mode: it answers "Not signed in to the Cloud gateway" instead of
the default "Not logged in". Runs serialise with the other real-CLI tests on
the machine through the same lock file, and whatever file was there is put back.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway import onboard

ROOT = Path(__file__).resolve().parent.parent
VERSION = os.environ.get("CLAUDE_CODE_E2E_VERSION", "2.1.333")
PACKAGE = "@anthropic-ai/claude-code-linux-x64"
CACHE = Path(os.environ.get("CLAUDE_CODE_E2E_CACHE", ROOT / ".cache" / "claude-code"))
MANAGED = Path("/etc/claude-code/managed-settings.json")
LOCK = Path(tempfile.gettempdir()) / "claude-code-e2e.lock"  # shared with tests/e2e


def _require(ok: bool, why: str) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"e2e prerequisite missing under CI: {why}", pytrace=False)
    pytest.skip(f"e2e skipped: {why}")


def _cli() -> Path:
    """The pinned native CLI from npm (cached in .cache/claude-code/VERSION/claude)."""
    target = CACHE / VERSION / "claude"
    if target.is_file():
        return target
    npm = shutil.which("npm")
    _require(npm is not None, "npm is not installed (needed to fetch the Claude Code CLI)")
    work = Path(tempfile.mkdtemp())
    try:
        packed = subprocess.run(
            [str(npm), "pack", "--silent", "--prefer-offline", f"{PACKAGE}@{VERSION}"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        _require(packed.returncode == 0, f"npm pack {PACKAGE}@{VERSION} failed: {packed.stderr[-500:]}")
        with tarfile.open(work / packed.stdout.strip().splitlines()[-1]) as archive:
            source = archive.extractfile("package/claude")
            assert source is not None
            staged = work / "claude"
            staged.write_bytes(source.read())
        staged.chmod(0o755)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


@contextmanager
def _managed_settings(text: str) -> Iterator[None]:
    with LOCK.open("a") as lock:
        deadline = time.monotonic() + 300
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, f"another run holds {LOCK}"
                time.sleep(0.2)
        original = MANAGED.read_bytes() if MANAGED.exists() else None
        created_dir = not MANAGED.parent.exists()
        try:
            MANAGED.parent.mkdir(parents=True, exist_ok=True)
            MANAGED.write_text(text, encoding="utf-8")
            MANAGED.chmod(0o644)
            yield
        finally:
            if original is None:
                MANAGED.unlink(missing_ok=True)
                if created_dir:
                    MANAGED.parent.rmdir()
            else:
                MANAGED.write_bytes(original)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _print_mode(claude: Path, home: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    env["DISABLE_AUTOUPDATER"] = "1"
    result = subprocess.run(
        [str(claude), "-p", "hi"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    return result.stdout + result.stderr


@pytest.mark.e2e
def test_claude_code_accepts_the_onboarding_settings(tmp_path: Path) -> None:
    _require(os.name == "posix" and os.geteuid() == 0, "not root (writing /etc/claude-code needs root)")
    claude = _cli()
    text = onboard.settings_json("https://claude-gw.corp.example.com")
    with _managed_settings(text):
        (tmp_path / "home").mkdir()
        out = _print_mode(claude, tmp_path / "home")
    assert "Not signed in to the Cloud gateway" in out, out


@pytest.mark.e2e
def test_without_the_settings_the_cli_is_not_in_gateway_mode(tmp_path: Path) -> None:
    """The control: the phrase above comes from the managed settings, not from a fresh HOME."""
    _require(os.name == "posix" and os.geteuid() == 0, "not root (writing /etc/claude-code needs root)")
    claude = _cli()
    with _managed_settings("{}"):
        (tmp_path / "home").mkdir()
        out = _print_mode(claude, tmp_path / "home")
    assert "Cloud gateway" not in out, out
