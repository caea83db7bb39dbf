"""Child processes of the benchmark: start, wait until they answer, measure, stop.

Every server runs in a process of its own (its own interpreter and GIL) so the
load generator, the stand-ins and the gateway do not share a CPU budget by
accident. CPU time and resident memory are read from the kernel (psutil) for a
process and its children (gunicorn's master and worker).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    started: float  # time.perf_counter() just before the spawn
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tree(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its children so far."""
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss_bytes(self) -> int:
        """Resident memory of the process and its children (what the instance pays for)."""
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def pss_bytes(self) -> int:
        """Proportional set size of the tree: a page the gunicorn master shares with its
        worker (copy-on-write after the fork) counted once, as the instance's memory is; the
        sum of RSS counts it in both."""
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
                total += proc.memory_full_info().pss
        return total

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.tree()[1:]] or [self.pid]

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the child's own process group (it was started in a new session), then SIGKILL."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path = ROOT) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 (the child owns it for its lifetime)
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    log.close()
    return Child(name, process, started, log_path)


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PYTEST"))}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_http(child: Child, url: str, timeout: float = 30.0, ok: tuple[int, ...] = (200,)) -> float:
    """Poll `url` until it answers one of `ok`; return seconds since the child was spawned."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited (code {child.process.returncode}):\n{child.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status in ok:
                    return time.perf_counter() - child.started
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return time.perf_counter() - child.started
            last = f"HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.02)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout:.0f} s ({last}):\n{child.log_tail()}")


def wait_line(child: Child, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in child.log_tail(20000):
            return
        if not child.alive():
            raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
        time.sleep(0.02)
    raise RuntimeError(f"{child.name} did not print {text!r} within {timeout:.0f} s:\n{child.log_tail()}")
