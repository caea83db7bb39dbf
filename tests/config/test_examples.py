"""examples/gateway.yaml, the production example, is a valid configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common import config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gateway.yaml"
SECRET_NAMES = {
    "claude-gateway-oidc-client-secret",
    "claude-gateway-jwt-key",
    "claude-gateway-admin-write",
    "claude-gateway-admin-read",
}


def _fake_secret(name: str) -> str:
    match = re.fullmatch(r"projects/acme-prod/secrets/([^/]+)/versions/\d+", name)
    assert match, f"{name}: example secrets are pinned versions of the acme-prod project"
    assert match.group(1) in SECRET_NAMES, f"{match.group(1)} is not a secret terraform/ creates"
    return f"value-of-{match.group(1)}-" + "x" * 32


def test_production_example_validates() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    loaded = config.parse(text, str(EXAMPLE), resolve_secret=_fake_secret)
    cfg = loaded.config
    assert not loaded.warnings
    assert cfg.public_url.startswith("https://")
    assert cfg.store.cloud_sql is not None and cfg.store.cloud_sql.ip_type == "private"
    assert cfg.store.postgres_url is None
    assert [u.provider for u in cfg.upstreams] == ["vertex"]
    assert cfg.upstreams[0].auth == {}
    assert cfg.session.secrets[0].startswith("value-of-claude-gateway-jwt-key")
    assert cfg.oidc.google_groups is not None
    assert not cfg.is_local


def test_example_holds_no_secret_values() -> None:
    lines = [line.split(" #")[0] for line in EXAMPLE.read_text(encoding="utf-8").splitlines()]
    code = [line for line in lines if not line.lstrip().startswith("#")]
    for line in code:
        match = re.search(r"\b(client_secret|key):\s*(\S.*)$", line)
        if match:
            assert match.group(2).lstrip('"').startswith("${secret:"), line
    jwt = code.index("  jwt_secret:")
    assert code[jwt + 1].strip().startswith("- ${secret:")


def test_terraform_secret_names_match() -> None:
    tf = (ROOT / "terraform" / "secrets.tf").read_text(encoding="utf-8")
    for name in SECRET_NAMES:
        assert re.search(rf"^\s+{name.removeprefix('claude-gateway-')}\s+=", tf, re.M), name


@pytest.mark.parametrize("broken", ["store:\n  cloud_sql: { instance: x }\n"])
def test_example_check_would_catch_a_broken_store(broken: str) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    text = re.sub(r"^store:\n(?:  .*\n)+", broken, text, flags=re.M)
    with pytest.raises(config.ConfigError) as info:
        config.parse(text, str(EXAMPLE), resolve_secret=_fake_secret)
    assert "store.cloud_sql.user" in str(info.value)
