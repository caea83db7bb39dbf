"""gateway.yaml and its secret references read from Secret Manager (a local stand-in
speaking the REST wire format, through the real google-cloud-secret-manager client)."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from support import base_config, deep_merge

from common import config
from common.config import secret_manager as secrets


class SecretManager:
    """`GET /v1/projects/P/secrets/S/versions/V:access` as Secret Manager answers it."""

    def __init__(self) -> None:
        self.versions: dict[str, list[str]] = {}
        self.calls: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.calls.append(self.path)
                match = re.match(r"^/v1/projects/([^/]+)/secrets/([^/]+)/versions/([^/:]+):access", self.path)
                if not match:
                    return self._send(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
                project, secret, version = match.groups()
                found = owner.versions.get(f"projects/{project}/secrets/{secret}", [])
                number = len(found) if version == "latest" else int(version)
                if not 1 <= number <= len(found):
                    return self._send(
                        404, {"error": {"code": 404, "message": "Secret version not found", "status": "NOT_FOUND"}}
                    )
                payload = base64.b64encode(found[number - 1].encode()).decode()
                name = f"projects/{project}/secrets/{secret}/versions/{number}"
                self._send(200, {"name": name, "payload": {"data": payload}})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def add(self, name: str, text: str) -> None:
        self.versions.setdefault(name, []).append(text)


@pytest.fixture
def secret_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretManager]:
    stand_in = SecretManager()
    monkeypatch.setenv("SECRET_MANAGER_ENDPOINT", stand_in.endpoint)
    monkeypatch.setattr(secrets, "_client", None)
    secrets.clear_cache()
    yield stand_in
    stand_in.server.shutdown()
    secrets.clear_cache()


BASE = base_config("postgresql://postgres@127.0.0.1:1/x")


def test_secret_references_resolve_through_secret_manager(secret_manager: SecretManager) -> None:
    secret_manager.add("projects/acme/secrets/jwt", "j" * 48)
    data = deep_merge(BASE, {"session": {"jwt_secret": "${secret:projects/acme/secrets/jwt/versions/1}"}})
    cfg = config.parse(yaml.safe_dump(data), "t").config
    assert cfg.session.secrets == ["j" * 48]
    assert any(call.startswith("/v1/projects/acme/secrets/jwt/versions/1:access") for call in secret_manager.calls)


def test_missing_secret_names_the_key_and_the_fix(secret_manager: SecretManager) -> None:
    data = deep_merge(BASE, {"oidc": {"client_secret": "${secret:projects/acme/secrets/nope/versions/latest}"}})
    with pytest.raises(config.ConfigError) as info:
        config.parse(yaml.safe_dump(data), "t")
    (problem,) = info.value.problems
    assert problem.startswith("oidc.client_secret: cannot read secret 'projects/acme/secrets/nope/versions/latest'")
    assert "roles/secretmanager.secretAccessor" in problem


def test_config_in_secret_manager_reloads_and_refuses_a_bad_version(secret_manager: SecretManager) -> None:
    name = "projects/acme/secrets/gateway-yaml"
    secret_manager.add(name, yaml.safe_dump(deep_merge(BASE, {"login_notice": "v1", "config_refresh_seconds": 60})))
    source = config.ConfigSource(name)
    assert source.is_secret
    assert source.get().login_notice == "v1"

    secret_manager.add(name, yaml.safe_dump(deep_merge(BASE, {"login_notice": "v2", "config_refresh_seconds": 60})))
    assert source.get().login_notice == "v1"  # not re-checked before config_refresh_seconds
    source._checked_at = 0.0
    assert source.get().login_notice == "v2"

    secret_manager.add(name, "session: {jwt_secret: short}\n")  # invalid: the last good stays
    source._checked_at = 0.0
    assert source.get().login_notice == "v2"
