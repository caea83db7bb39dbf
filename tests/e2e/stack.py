"""The gateway as deployed, on loopback: gunicorn + the one-origin app, real Postgres,
the stand-in IdP (npm oauth2-mock-server) and the stand-in model upstream (Vertex wire format).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from support import base_config, deep_merge, free_port, write_config
from tls_front import TestCA, TlsFront

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# What the stand-in model says: a marker no other component could produce.
REPLY = "Answer from the e2e model stand-in (7f3c). "
USER = {"email": "dev@example.com", "sub": "dev-0001", "email_verified": True, "groups": ["eng"]}


@dataclass
class Stack:
    url: str
    config_path: Path
    request_log: Path
    idp: Any
    upstream: Any
    collector: Any  # otlp_receiver.Receiver: the operator's OTLP collector
    server_log: Path
    managed: Any = None  # the claude_code.ManagedSettings this run owns
    ca: TestCA | None = None  # https runs: the CA the client is told to trust
    front: TlsFront | None = None  # https runs: the TLS-terminating front (the load balancer's part)

    def requests(self) -> list[dict[str, Any]]:
        """Every request the gateway has answered so far (see gateway_wsgi.RequestLog)."""
        if not self.request_log.exists():
            return []
        return [json.loads(line) for line in self.request_log.read_text().splitlines() if line.strip()]

    def mark(self) -> int:
        """A position in the request log: `since(mark)` is what came after."""
        return len(self.requests())

    def since(self, mark: int) -> list[dict[str, Any]]:
        return self.requests()[mark:]

    def server_tail(self, chars: int = 3000) -> str:
        return self.server_log.read_text(errors="replace")[-chars:] if self.server_log.exists() else ""


def e2e_config(database_url: str, public_url: str, issuer: str, upstream_url: str) -> dict[str, Any]:
    """The test config: the local one, with limits raised (a suite signs in many times)."""
    merged: dict[str, Any] = deep_merge(
        base_config(database_url, public_url=public_url, issuer=issuer, upstream_url=upstream_url),
        {
            "oidc": {"groups_claim": "groups"},
            "rate_limits": {
                "device_authorization": {"max": 10000, "window_seconds": 60},
                "device_verify": {"max": 10000, "window_seconds": 60},
            },
        },
    )
    return merged


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({process.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/.well-known/oauth-authorization-server", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"gateway not ready after {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


@contextlib.contextmanager
def gunicorn(config_path: Path, port: int, request_log: Path, server_log: Path, threads: int = 16) -> Iterator[str]:
    """The gateway under gunicorn (gthread, one worker) as functions-framework runs it."""
    env = dict(os.environ)
    env.update(
        {
            "GATEWAY_CONFIG": str(config_path),
            "E2E_REQUEST_LOG": str(request_log),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
            "LOG_LEVEL": "INFO",
        }
    )
    with server_log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--threads",
                str(threads),
                "--timeout",
                "0",
                "--graceful-timeout",
                "3",
                "--no-control-socket",  # its default path in ~/.gunicorn is shared by every gunicorn here
                "gateway_wsgi:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, server_log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def stack(
    database_url: str,
    workdir: Path,
    overrides: dict[str, Any] | None = None,
    https_host: str | None = None,
    front_address: str = "127.0.0.1",
) -> Iterator[Stack]:
    """IdP, upstream, migrated database and gunicorn, all on 127.0.0.1; stopped in reverse order.

    With `https_host` the gateway's public URL is `https://HOST:PORT`: a TLS front on
    `front_address` (what HOST must resolve to) with a leaf for HOST from a fresh test CA
    relays to gunicorn's plain http.
    """
    from support import activate
    from support.otlp_receiver import otlp_receiver

    from common.db import migrations
    from common.db import pool as store
    from gateway.standins import idp as idp_standin
    from gateway.standins import upstream as upstream_standin

    with contextlib.ExitStack() as stops:
        collector = stops.enter_context(otlp_receiver())
        idp = idp_standin.start(users=[USER])
        stops.callback(idp.stop)
        upstream = upstream_standin.start(text=REPLY, deltas=2)
        stops.callback(upstream.stop)
        port = free_port()
        public_url = f"http://127.0.0.1:{port}"
        ca = front = None
        if https_host is not None:
            ca = TestCA(workdir / "tls")
            front = TlsFront(port, ca.issue(https_host), front_address)
            stops.callback(front.close)
            public_url = f"https://{https_host}:{front.port}"
        data = e2e_config(database_url, public_url, idp.issuer, upstream.base_url)
        # One local collector gets both the gateway's own metrics (flushed on every request, so
        # a test sees them at once) and the CLI's exports relayed through /v1/metrics|logs.
        data["telemetry"] = {
            "collector": {"endpoint": collector.url},
            "flush_interval_ms": 0,
            "forward_to": [{"url": collector.url, "metrics": True, "logs": True}],
        }
        if overrides:
            data = deep_merge(data, overrides)
        config_path = write_config(workdir, data)
        activate(config_path)
        migrations.migrate(store.get())
        store.reset()
        request_log = workdir / "requests.jsonl"
        server_log = workdir / "gunicorn.log"
        stops.enter_context(gunicorn(config_path, port, request_log, server_log))
        yield Stack(public_url, config_path, request_log, idp, upstream, collector, server_log, ca=ca, front=front)
