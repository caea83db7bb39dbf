"""Admin authentication: admin keys and admin groups."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask, request
from support import ADMIN_READ_KEY, ADMIN_WRITE_KEY, parsed_config

from common import config
from common.admin import auth as admin_auth
from common.auth import sessions
from common.core.errors import GatewayError


def _admin_request(cfg: config.Config, headers: dict[str, str], need: str) -> admin_auth.Admin:
    app = Flask("t")
    with app.test_request_context("/", headers=headers):
        return admin_auth.authenticate(request, cfg, need)  # type: ignore[arg-type]


def test_admin_keys_and_groups(tmp_path: Path) -> None:
    cfg = parsed_config()
    assert _admin_request(cfg, {"x-api-key": ADMIN_WRITE_KEY}, "write").actor == "key:test-write"
    assert _admin_request(cfg, {"x-api-key": ADMIN_READ_KEY}, "read").access == "read"
    with pytest.raises(GatewayError) as info:
        _admin_request(cfg, {"x-api-key": ADMIN_READ_KEY}, "write")
    assert info.value.status == 403
    with pytest.raises(GatewayError) as info:
        _admin_request(cfg, {"x-api-key": ADMIN_WRITE_KEY + "x"}, "read")
    assert info.value.status == 401
    with pytest.raises(GatewayError) as info:
        _admin_request(cfg, {}, "read")
    assert info.value.status == 401
    admin_token, _ = sessions.issue(cfg, sub="a", email="admin@example.com", groups=["claude-admins"])
    assert _admin_request(cfg, {"Authorization": f"Bearer {admin_token}"}, "write").actor == "admin@example.com"
    dev_token, _ = sessions.issue(cfg, sub="d", email="dev@example.com", groups=["eng"])
    with pytest.raises(GatewayError) as info:
        _admin_request(cfg, {"Authorization": f"Bearer {dev_token}"}, "read")
    assert info.value.status == 403 and "dev@example.com" in info.value.message


def test_group_access_gives_admins_write_and_viewers_read() -> None:
    cfg = parsed_config({"admin": {"admin_groups": ["claude-admins"], "viewer_groups": ["Finance"]}})
    assert admin_auth.group_access(cfg, ["eng", "CLAUDE-ADMINS"]) == "write"
    assert admin_auth.group_access(cfg, [" finance "]) == "read"
    assert admin_auth.group_access(cfg, ["finance", "claude-admins"]) == "write"  # the broader role wins
    assert admin_auth.group_access(cfg, ["eng"]) is None
    viewer, _ = sessions.issue(cfg, sub="f", email="fin@example.com", groups=["finance"])
    assert _admin_request(cfg, {"Authorization": f"Bearer {viewer}"}, "read").access == "read"
    with pytest.raises(GatewayError) as info:
        _admin_request(cfg, {"Authorization": f"Bearer {viewer}"}, "write")
    assert info.value.status == 403 and info.value.error_type == "permission_error"
