"""gateway.yaml: schema errors name the key path, value and fix; reload keeps the last good."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import base_config, deep_merge

from common import config
from common.config import ConfigError


def _parse(data: dict[str, Any]) -> config.Loaded:
    return config.parse(yaml.safe_dump(data), "test.yaml")


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _parse(data)
    return info.value.problems


BASE = base_config("postgresql://postgres@127.0.0.1:5432/gw")


def test_base_config_is_valid() -> None:
    loaded = _parse(BASE)
    assert loaded.config.session.secrets
    assert loaded.config.public_url == "http://127.0.0.1:8080"
    assert loaded.warnings == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # 1 wrong type inside a list of policies, with the value shown
        (
            {"managed": {"policies": [{"match": {"groups": "eng"}}, {}]}},
            "managed.policies[0].match.groups: expected a list of strings, got 'eng'",
        ),
        # 2 unknown key names the key and lists the known ones
        ({"sesion": {}}, "sesion: unknown key; remove it; known keys here:"),
        # 3 a provider we do not serve, named
        ({"upstreams": [{"name": "b", "provider": "bedrock"}]}, "upstreams[0].provider: 'bedrock' is not served"),
        # 4 short JWT key
        ({"session": {"jwt_secret": "short"}}, "session.jwt_secret: too short (5 characters)"),
        # 5 catch-all not last
        (
            {"managed": {"policies": [{}, {"match": {"groups": ["eng"]}}]}},
            "managed.policies[0]: a catch-all policy (no match.groups) must be the last one",
        ),
        # 6 model mapped to an unknown upstream
        (
            {"models": [{"id": "claude-x", "upstream_model": {"nope": "x@1"}}]},
            "models[0].upstream_model.nope: no upstream is named 'nope'",
        ),
        # 7 plain http on a public host
        (
            {"listen": {"public_url": "http://gw.example.com"}},
            "listen.public_url: plain http is allowed only on loopback",
        ),
        # 8 scopes without openid
        ({"oidc": {"scopes": ["email"]}}, "oidc.scopes: must include 'openid'"),
        # 9 an integer where a string list is expected
        ({"oidc": {"allowed_groups": 5}}, "oidc.allowed_groups: expected a list of strings, got 5"),
        # 10 a bad CIDR
        ({"listen": {"trusted_proxies": ["10.0.0.0/99"]}}, "listen.trusted_proxies[0]: expected a CIDR"),
        # 11 short admin key
        ({"admin": {"write_keys": [{"id": "a", "key": "k"}]}}, "admin.write_keys[0].key: too short"),
        # 12 literal value out of range
        (
            {"managed": {"policies": [{"tools": {"mode": "drop"}}]}},
            "managed.policies[0].tools.mode: expected one of 'reject', 'strip', got 'drop'",
        ),
        # 13 vertex without a project
        (
            {"upstreams": [{"name": "v", "provider": "vertex", "region": "global"}]},
            "upstreams[0].project_id: required for provider vertex",
        ),
        # 14 a wrong scalar type
        ({"limits": {"max_request_bytes": "lots"}}, "limits.max_request_bytes: expected an integer, got 'lots'"),
    ],
)
def test_bad_config_names_key_path(change: dict[str, Any], expected: str) -> None:
    problems = _problems(deep_merge(BASE, change))
    assert any(expected in p for p in problems), problems


def test_missing_required_section() -> None:
    data = dict(BASE)
    del data["oidc"]
    problems = _problems(data)
    assert problems == ["oidc: required key is missing; add it (a mapping)"]


def test_enforcement_needs_admin() -> None:
    data = dict(BASE)
    del data["admin"]
    problems = _problems(data)
    assert "enforcement: needs an `admin` section" in problems[0]


def test_undefined_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    problems = _problems(deep_merge(BASE, {"oidc": {"client_secret": "${NOT_SET_ANYWHERE}"}}))
    assert problems == [
        "oidc.client_secret: environment variable NOT_SET_ANYWHERE is not set; set it or replace '${NOT_SET_ANYWHERE}'"
    ]


def test_references_expand(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("k" * 40 + "\n")
    monkeypatch.setenv("GW_TEST_DB", "postgresql://postgres@127.0.0.1:1/x")
    data = deep_merge(
        BASE,
        {
            "session": {"jwt_secret": f"${{file:{secret_file}}}"},
            "store": {"postgres_url": "${GW_TEST_DB}"},
            "oidc": {"client_secret": "${secret:projects/p/secrets/oidc/versions/3}"},
        },
    )
    seen: list[str] = []

    def resolve(name: str) -> str:
        seen.append(name)
        return "from-secret-manager"

    cfg = config.parse(yaml.safe_dump(data), "t", resolve_secret=resolve).config
    assert cfg.session.secrets == ["k" * 40]
    assert cfg.store.postgres_url == "postgresql://postgres@127.0.0.1:1/x"
    assert cfg.oidc.client_secret == "from-secret-manager"
    assert seen == ["projects/p/secrets/oidc/versions/3"]


def test_invalid_yaml_reports_line() -> None:
    with pytest.raises(ConfigError) as info:
        config.parse("oidc: [unclosed\n", "t")
    assert "line" in info.value.problems[0]


def test_availablemodels_without_model_warns() -> None:
    loaded = _parse(deep_merge(BASE, {"managed": {"policies": [{"settings": {"availableModels": ["claude-nope-9"]}}]}}))
    assert any("claude-nope-9" in w for w in loaded.warnings)


def test_reload_takes_new_version_and_refuses_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(BASE))
    source = config.ConfigSource(str(path))
    first = source.get()
    assert first.login_notice is None

    def rewrite(data: dict[str, Any] | str) -> None:
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        stamp = time.time() + 10
        os.utime(path, (stamp, stamp))
        source._checked_at = 0.0  # skip the 5 s file re-check interval

    rewrite(deep_merge(BASE, {"login_notice": "new notice"}))
    assert source.get().login_notice == "new notice"

    rewrite("oidc: {issuer: 5}\n")  # invalid: the last good stays in force
    assert source.get().login_notice == "new notice"

    rewrite(deep_merge(BASE, {"login_notice": "third"}))
    assert source.get().login_notice == "third"


def test_example_configs_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.run import local_environment

    for key, value in local_environment(
        8080, "postgresql://postgres@127.0.0.1:1/x", "http://127.0.0.1:2", "http://127.0.0.1:3"
    ).items():
        monkeypatch.setenv(key, value)
    root = Path(__file__).resolve().parents[2]
    loaded = config.parse((root / "examples" / "gateway.local.yaml").read_text(), "local")
    assert loaded.config.is_local
    assert loaded.warnings == []
