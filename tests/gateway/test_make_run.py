"""README's run command: everything up on one origin, and Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import psutil
import pytest
import requests
from support import free_port, local_state_dir

from gateway import devdb

ROOT = Path(__file__).resolve().parents[2]
PROBES = ["/healthz", "/_gateway/auth/healthz", "/_gateway/messages/readyz", "/_gateway/admin/readyz"]


@pytest.fixture
def local() -> Iterator[Path]:
    with local_state_dir() as path:
        yield path


def test_run_serves_every_function_and_stops_everything(local: Path) -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "GATEWAY_LOCAL_DIR": str(local)}
    env.pop("GATEWAY_CONFIG", None)
    process = _start_run(port, local)
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    children: list[psutil.Process] = []
    try:
        up: dict[str, int] = {}
        while time.monotonic() - started < 90 and len(up) < len(PROBES):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            for probe in PROBES:
                try:
                    status = requests.get(base + probe, timeout=2).status_code
                except requests.RequestException:
                    continue
                if status == 200:
                    up[probe] = status
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        assert len(up) == len(PROBES), f"not up after {elapsed:.1f} s: {sorted(set(PROBES) - set(up))}"
        print(f"make run: every function healthy {elapsed:.1f} s after start")
        # The local stand-ins answer through the gateway: a signed token gets a model reply.
        token = subprocess.run(
            [sys.executable, "-m", "gateway", "token", "--email", "dev@example.com", "--groups", "eng"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        reply = requests.post(
            base + "/v1/messages",
            headers={"Authorization": f"Bearer {token}"},
            json={"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["content"][0]["type"] == "text"
        children = psutil.Process(process.pid).children(recursive=True)
        assert children, "the stand-ins and Postgres run as child processes"
    finally:
        output = _stop(process)
    assert "STAND-IN" in output and "Ctrl-C stops everything" in output
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
        time.sleep(0.2)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running after Ctrl-C: {[c.name() for c in alive]}"


def _start_run(port: int, local: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PORT": str(port), "GATEWAY_LOCAL_DIR": str(local)}
    env.pop("GATEWAY_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_healthy(process: subprocess.Popen[str], port: int, within: float = 90) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if requests.get(f"http://127.0.0.1:{port}/_gateway/messages/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("make run did not become ready")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    try:
        return process.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def test_run_recovers_from_a_stale_postgres_and_refuses_a_second_live_run(local: Path) -> None:
    # What a hard-killed `make run` leaves behind: its PostgreSQL still running on .local/pgdata.
    orphan = devdb.EmbeddedPostgres(datadir=local / "pgdata", port=devdb.free_port())
    orphan.start()
    assert orphan.process is not None
    port = free_port()
    first = _start_run(port, local)
    try:
        _wait_healthy(first, port)
        assert orphan.process.poll() is not None, "the stale server was stopped"
        # A second run on the same checkout says so in one line and exits.
        second = _start_run(free_port(), local)
        output, _ = second.communicate(timeout=60)
        assert second.returncode == 1
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1 and f"already serves http://127.0.0.1:{port}" in lines[0], output
        # `make token` without PORT mints for the port the gateway really runs on.
        env = {**os.environ, "GATEWAY_LOCAL_DIR": str(local)}
        env.pop("PORT", None)
        env.pop("GATEWAY_CONFIG", None)
        token = subprocess.run(
            [sys.executable, "-m", "gateway", "token", "--email", "dev@example.com"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert jwt.decode(token, options={"verify_signature": False})["iss"] == f"http://127.0.0.1:{port}"
        reply = requests.get(
            f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert reply.status_code == 200, reply.text
    finally:
        output = _stop(first)
    assert "stopped a PostgreSQL server" in output
    assert not (local / "run.json").exists()
