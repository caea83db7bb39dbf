"""Client addresses: X-Forwarded-For only from trusted proxies; access_control refuses addresses."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, request
from support import activate, base_config, deep_merge, parsed_config, write_config

from common import config
from common.http import clientip


def _request_ip(cfg: config.Config, remote: str, forwarded: str | None) -> str:
    app = Flask("t")
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with app.test_request_context("/", headers=headers, environ_base={"REMOTE_ADDR": remote}):
        return clientip.client_ip(request, cfg)


def test_forwarded_for_only_from_trusted_proxies() -> None:
    cfg = parsed_config({"listen": {"trusted_proxies": ["35.191.0.0/16", "10.0.0.0/8"]}})
    assert _request_ip(cfg, "203.0.113.9", "1.2.3.4") == "203.0.113.9"  # untrusted peer: header ignored
    assert _request_ip(cfg, "35.191.1.1", "1.2.3.4") == "1.2.3.4"
    # A client-supplied hop to the left of the real one is not believed.
    assert _request_ip(cfg, "35.191.1.1", "6.6.6.6, 1.2.3.4, 10.1.1.1") == "1.2.3.4"


def test_access_control_refuses_addresses(tmp_path: Path, database_url: str) -> None:
    from gateway import local

    data = deep_merge(base_config(database_url), {"access_control": {"deny_cidrs": ["127.0.0.0/8"]}})
    activate(write_config(tmp_path, data))
    client = local.create_app().test_client()
    response = client.get("/v1/models")
    assert response.status_code == 403
    assert response.get_json()["error"]["type"] == "permission_error"
    assert client.get("/healthz").status_code == 200  # probes are not refused

    data = deep_merge(base_config(database_url), {"access_control": {"allow_cidrs": ["10.0.0.0/8"]}})
    activate(write_config(tmp_path, data, "allow.yaml"))
    assert local.create_app().test_client().get("/v1/models").status_code == 403
