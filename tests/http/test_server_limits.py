"""The HTTP server's limits on real sockets against the real server (issue 14, findings 4 and 5).

Each function is started the way Cloud Run starts it: functions-framework's CLI
loading `functions/<name>/main.py` (gunicorn's threaded worker), so what is
tested is what production runs, `server.install()` included; `gateway serve`
(the one-origin server of `make run` and containers) is started as its command.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from support import base_config, free_port, write_config

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
THREADS = 4
ARBITERS: dict[int, int] = {}  # port -> the gunicorn arbiter's pid (the process started)


def _wait(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else "exited"
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError("server did not start")


def _start(argv: list[str], port: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "THREADS": str(THREADS),
        "GATEWAY_READ_TIMEOUT_SECONDS": "1",
        **(extra_env or {}),
    }
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait(port, process)
    ARBITERS[port] = process.pid
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def _function(name: str, tmp_path: Path, database_url: str) -> Iterator[int]:
    port = free_port()
    path = write_config(tmp_path, base_config(database_url, public_url=f"http://127.0.0.1:{port}"))
    argv = [str(BIN / "functions-framework"), "--target", name, "--source"]
    argv += [str(ROOT / "functions" / name / "main.py"), "--port", str(port)]
    process = _start(argv, port, {"GATEWAY_CONFIG": str(path)})
    try:
        yield port
    finally:
        _stop(process)


@pytest.fixture(params=["messages", "auth", "admin"])
def function(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Iterator[int]:
    """One function under functions-framework, as deployed; yields its port."""
    with _function(request.param, tmp_path, database_url) as port:
        yield port


@pytest.fixture
def messages(tmp_path: Path, database_url: str) -> Iterator[int]:
    with _function("messages", tmp_path, database_url) as port:
        yield port


@pytest.fixture
def serve(tmp_path: Path, database_url: str) -> Iterator[int]:
    """`python -m gateway serve`: the one-origin server (the same class `make run` uses)."""
    port = free_port()
    path = write_config(tmp_path, base_config(database_url, public_url=f"http://127.0.0.1:{port}"))
    argv = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = _start(argv, port, {"GATEWAY_CONFIG": str(path)})
    try:
        yield port
    finally:
        _stop(process)


def _hold(port: int, count: int, start: bytes) -> list[socket.socket]:
    """`count` connections that send `start` and then nothing."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(start)
        held.append(sock)
    return held


def _stall(port: int, count: int) -> list[socket.socket]:
    """Unauthenticated requests that declare a body and never send it."""
    return _hold(port, count, b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")


def _slow_headers(port: int, count: int) -> list[socket.socket]:
    """Requests whose headers never end."""
    return _hold(port, count, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")


def _healthz_seconds(port: int) -> float:
    started = time.monotonic()
    response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
    assert response.status_code == 200
    return time.monotonic() - started


def _status(pid: int | str) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _worker_rss_kib(arbiter: int) -> int:
    """Resident memory of gunicorn's worker(s): the children of the arbiter."""
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = _status(entry.name)
            except OSError:
                continue
            if status.get("PPid") == str(arbiter):
                total += int(status["VmRSS"].split()[0])
    assert total, "no worker found"
    return total


def test_stalled_bodies_do_not_pin_the_threads(messages: int) -> None:
    """Finding 4: 20 connections that never finish their body (5 per thread) no longer starve /healthz.

    Before: every thread blocked in recv() for ever and /healthz timed out (30 s here).
    After: each stalled read is cut at the read timeout (1 s here), so /healthz
    waits at most for the stalled ones queued before it (20 / 4 threads x 1 s).
    """
    held = _stall(messages, 20)
    try:
        waited = _healthz_seconds(messages)
        assert waited < 12, waited
        # The stalled requests were answered (401: no credential) and their connections closed.
        held[0].settimeout(10)
        first = held[0].recv(4096)
        assert first.startswith(b"HTTP/1.1 "), first[:80]
        assert not first.startswith(b"HTTP/1.1 5"), first[:200]
    finally:
        for sock in held:
            sock.close()


def test_headers_that_never_end_are_cut_with_408(function: int) -> None:
    held = _slow_headers(function, 2 * THREADS)
    try:
        assert _healthz_seconds(function) < 8
        held[0].settimeout(10)
        assert held[0].recv(4096).startswith(b"HTTP/1.1 408")
        assert held[0].recv(4096) == b""  # and closed
    finally:
        for sock in held:
            sock.close()


def test_a_trickle_is_cut_like_a_stall(messages: int) -> None:
    """One byte every 0.5 s never lets the per-read timeout (1 s) fire; the minimum rate cuts it."""
    sock = socket.create_connection(("127.0.0.1", messages))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    answer = b""
    try:
        while time.monotonic() - started < 20:
            try:
                sock.sendall(b"X")
            except OSError:
                break
            sock.settimeout(0.5)
            try:
                answer += sock.recv(4096)
                break
            except TimeoutError:
                continue
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert time.monotonic() - started < 5
    finally:
        sock.close()


def _send_long_url(port: int, size: int) -> bytes:
    """Send a request whose URL is `size` bytes (until the server stops reading); its answer's start."""
    sock = socket.create_connection(("127.0.0.1", port))
    block = b"a" * (1 << 20)
    try:
        try:
            sock.sendall(b"GET /")
            for _ in range(size // len(block)):
                sock.sendall(block)
            sock.sendall(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        except OSError:
            pass  # the server stopped reading: its answer is already on the way
        sock.settimeout(60)
        try:
            return sock.recv(4096)
        except OSError:
            return b""
    finally:
        sock.close()


def test_a_64_mib_url_is_refused_without_growing_the_worker(function: int) -> None:
    """Finding 5: functions-framework sets limit_request_line=0; a 64 MiB URL was read whole (200, +300 MiB)."""
    port = function
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    before = _worker_rss_kib(ARBITERS[port])
    first = _send_long_url(port, 64 << 20)
    grown = _worker_rss_kib(ARBITERS[port]) - before
    assert first.startswith(b"HTTP/1.1 414"), (first[:80], f"worker grew by {grown} KiB")
    assert grown < 16 * 1024, f"worker grew by {grown} KiB"
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


def test_header_count_and_size_are_bounded(function: int) -> None:
    base = f"http://127.0.0.1:{function}/healthz"
    assert requests.get(base, headers={"X-Big": "a" * 9000}, timeout=5).status_code in (400, 431)
    many = {f"X-H{i}": "1" for i in range(150)}
    assert requests.get(base, headers=many, timeout=5).status_code in (400, 431)
    assert requests.get(base, headers={"X-Fine": "a" * 4000}, timeout=5).status_code == 200


def test_the_one_origin_server_has_the_same_limits(serve: int) -> None:
    first = _send_long_url(serve, 16 << 20)
    assert first.startswith(b"HTTP/1.1 414"), first[:80]
    held = _stall(serve, 2 * THREADS)
    try:
        assert _healthz_seconds(serve) < 8
    finally:
        for sock in held:
            sock.close()
