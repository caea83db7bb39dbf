"""Helpers the test modules share: configs, a live one-origin server, tokens."""

from __future__ import annotations

import copy
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from werkzeug.serving import BaseWSGIServer, make_server

JWT_SECRET = "test-jwt-secret-0123456789-abcdefghijklmnop"
ADMIN_WRITE_KEY = "test-admin-write-key-0123456789abcdef"
ADMIN_READ_KEY = "test-admin-read-key-0123456789abcdefgh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def base_config(
    database_url: str,
    public_url: str = "http://127.0.0.1:8080",
    issuer: str = "http://127.0.0.1:9",
    upstream_url: str = "http://127.0.0.1:9/v1",
) -> dict[str, Any]:
    """A valid local configuration; tests override what they exercise."""
    return {
        "local": {"enabled": True},
        "listen": {"public_url": public_url},
        "oidc": {"issuer": issuer, "client_id": "gateway-test", "client_secret": "idp-client-secret"},
        "session": {"jwt_secret": JWT_SECRET, "ttl_hours": 1},
        "store": {"postgres_url": database_url, "max_connections": 8, "connect_timeout_seconds": 2},
        "rate_limits": {
            "device_authorization": {"max": 1000, "window_seconds": 600},
            "device_verify": {"max": 1000, "window_seconds": 600},
        },
        "upstreams": [
            {
                "name": "vertex",
                "provider": "vertex",
                "project_id": "test-project",
                "region": "us-east5",
                "base_url": upstream_url,
                "auth": {"anonymous": "true"},
                "models": ["claude-*"],
            }
        ],
        "models": [
            {"id": "claude-opus-4-5", "upstream_model": {"vertex": "claude-opus-4-5@20251101"}},
            {"id": "claude-sonnet-4-5", "upstream_model": {"vertex": "claude-sonnet-4-5@20250929"}},
            {"id": "claude-haiku-4-5", "upstream_model": {"vertex": "claude-haiku-4-5@20251001"}},
        ],
        "managed": {"policies": [{"name": "everyone", "settings": {"availableModels": ["opus", "sonnet", "haiku"]}}]},
        "admin": {
            "admin_groups": ["claude-admins"],
            "write_keys": [{"id": "test-write", "key": ADMIN_WRITE_KEY}],
            "read_keys": [{"id": "test-read", "key": ADMIN_READ_KEY}],
            "billing_group_tag": "cost-center",
        },
        "enforcement": {"fail_closed_on_error": False},
        "pricing": {"multiplier": 1.0},
    }


def write_config(directory: Path, data: dict[str, Any], name: str = "gateway.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def activate(config_path: Path) -> None:
    """Point this process's gateway at a config (and forget cached state)."""
    from common import config
    from common.db import pool as store

    config.use(str(config_path))
    store.reset()


class LiveServer:
    def __init__(self, server: BaseWSGIServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@contextmanager
def live_gateway(config_path: Path, port: int | None = None) -> Iterator[LiveServer]:
    """The one-origin app (all three functions) served over HTTP on loopback."""
    from gateway import local

    activate(config_path)
    app = local.create_app()
    server = make_server("127.0.0.1", port or 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    live = LiveServer(server, thread)
    try:
        yield live
    finally:
        live.stop()


def token_for(config_path: Path, email: str = "dev@example.com", groups: tuple[str, ...] = ()) -> str:
    from common import config
    from common.auth import sessions

    activate(config_path)
    token, _ = sessions.issue(config.current(), sub=email, email=email, groups=list(groups))
    return token


def parsed_config(extra: dict[str, Any] | None = None) -> Any:
    """A validated Config of the test base config with `extra` merged in (no database is contacted)."""
    import yaml

    from common import config

    data = deep_merge(base_config("postgresql://postgres@127.0.0.1:1/x"), extra or {})
    return config.parse(yaml.safe_dump(data), "t").config


@contextmanager
def local_state_dir() -> Iterator[Path]:
    """A fresh directory for a `make run`'s .local state that PostgreSQL's own user can reach, removed after.

    Not under `tmp_path`: every pytest session resets its root (/tmp/pytest-of-<user>) to
    0700, which locks the unprivileged server user out of a data directory below it.
    """
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="gateway-local-"))
    try:
        yield base / "local"
    finally:
        shutil.rmtree(base, ignore_errors=True)
