"""The real Claude Code CLI (native binary), fetched from npm into `.cache/claude-code/<version>/claude`.

One fetcher for everything that runs the real client: the end-to-end tests,
the request capture (`gateway.capture`) and the benchmark's peer
(`claude gateway`). `npm pack @anthropic-ai/claude-code-linux-x64@VERSION`
brings the binary; it needs no Node to run. A file lock lets parallel runs
share the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "claude-code"
PACKAGE = "@anthropic-ai/claude-code-linux-x64"
VERSION = "2.1.333"  # the pinned client: e2e tests, capture and the benchmark's peer
MINIMUM_VERSION = "2.1.330"  # the oldest client the gateway is tested with (docs/e2e.md)


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive lock on `path` shared by every process on the machine (TimeoutError after `timeout`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another run holds {path} for more than {timeout:.0f}s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def version_of(binary: Path) -> str:
    """What `claude --version` says (e.g. `2.1.333 (Claude Code)`)."""
    out = subprocess.run(
        [str(binary), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir(), "DISABLE_AUTOUPDATER": "1"},
        check=False,
    )
    return out.stdout.strip()


def ensure(version: str = VERSION, cache: Path = CACHE) -> Path:
    """The native `claude` of `version`, fetched with `npm pack` on first use and cached."""
    target = cache / version / "claude"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: cannot fetch the Claude Code CLI (apt-get install npm)")
    with file_lock(cache / ".fetch.lock", timeout=300):
        if target.is_file():
            return target
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="fetch-", dir=cache))
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
            found = version_of(staged)
            if not found.startswith(version):
                raise RuntimeError(f"{PACKAGE}@{version} reports version {found!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target
