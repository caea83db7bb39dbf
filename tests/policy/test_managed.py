"""GET /managed/settings over HTTP: per-group settings, checksum/ETag, 304/404/empty semantics."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import base_config, deep_merge, live_gateway, parsed_config, token_for, write_config

from common import config, policy
from common.core import checksum, models
from common.policy import managed

EMPTY = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

POLICIES: list[dict[str, Any]] = [
    {
        "name": "ml",
        "match": {"groups": ["ml-research"]},
        "settings": {"availableModels": ["opus", "sonnet", "haiku"], "model": "opus", "permissions": {"deny": []}},
    },
    {
        "name": "contractors",
        "match": {"groups": ["contractors"]},
        "settings": {"availableModels": ["haiku"], "permissions": {"deny": ["WebFetch", "Bash"]}},
        "tools": {"deny": ["WebFetch", "Bash", "mcp__*"], "mode": "strip"},
    },
    {
        "name": "finance",
        "match": {"groups": ["finance", "Accounting"]},
        "settings": {"availableModels": ["claude-sonnet-4-5"], "env": {"ZED": "1", "ALPHA": "ü"}},
    },
    {"name": "everyone", "settings": {"availableModels": ["sonnet", "haiku"], "cleanupPeriodDays": 30}},
]


def _config(tmp_path: Path, database_url: str, extra: dict[str, Any] | None = None, name: str = "gateway.yaml") -> Path:
    data = deep_merge(base_config(database_url), {"managed": {"policies": POLICIES}})
    return write_config(tmp_path, deep_merge(data, extra or {}), name)


@pytest.fixture
def gateway(tmp_path: Path, database_url: str) -> Iterator[tuple[str, Path]]:
    path = _config(tmp_path, database_url)
    with live_gateway(path) as live:
        yield live.url, path


def get(url: str, token: str | None, **headers: str) -> requests.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(f"{url}/managed/settings", headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (("ml-research", "contractors"), 0),  # first match wins
        (("contractors",), 1),
        (("accounting",), 2),  # group names compare case-insensitively
        (("finance", "eng"), 2),
        (("eng",), 3),
        ((), 3),
    ],
)
def test_each_group_gets_its_policys_settings(
    gateway: tuple[str, Path], groups: tuple[str, ...], expected: int
) -> None:
    url, path = gateway
    response = get(url, token_for(path, groups=groups))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"uuid", "checksum", "settings"}
    assert body["settings"] == POLICIES[expected]["settings"]
    assert body["checksum"] == checksum.checksum(POLICIES[expected]["settings"])
    assert response.headers["ETag"] == f'"{body["checksum"]}"'
    assert uuid.UUID(body["uuid"]).version == 5
    assert "no-store" not in response.headers.get("Cache-Control", "")


def test_uuid_is_stable_per_policy_and_differs_between_policies(gateway: tuple[str, Path]) -> None:
    url, path = gateway
    first = get(url, token_for(path, groups=("contractors",))).json()
    again = get(url, token_for(path, email="other@example.com", groups=("contractors",))).json()
    other = get(url, token_for(path, groups=("eng",))).json()
    assert first["uuid"] == again["uuid"] and first["checksum"] == again["checksum"]
    assert other["uuid"] != first["uuid"] and other["checksum"] != first["checksum"]


def test_body_checksum_is_over_the_served_settings(gateway: tuple[str, Path]) -> None:
    # Claude Code hashes the settings it received: recompute from the wire, not from our config.
    url, path = gateway
    body = get(url, token_for(path, groups=("finance",))).json()
    assert checksum.checksum(body["settings"]) == body["checksum"]


@pytest.mark.parametrize(
    "header",
    [
        '"{c}"',
        'W/"{c}"',
        '"sha256:0000", "{c}"',
        '"a,b", W/"{c}" ',
        "{c}",
    ],
)
def test_matching_if_none_match_gets_304(gateway: tuple[str, Path], header: str) -> None:
    url, path = gateway
    token = token_for(path, groups=("contractors",))
    checksum = get(url, token).json()["checksum"]
    response = get(url, token, **{"If-None-Match": header.format(c=checksum)})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["ETag"] == f'"{checksum}"'


@pytest.mark.parametrize("header", ['"sha256:deadbeef"', "*", '""', "W/", '"{c}x"'])
def test_other_if_none_match_gets_200(gateway: tuple[str, Path], header: str) -> None:
    # `*` included: Claude Desktop sends it only to ask whether settings exist.
    url, path = gateway
    token = token_for(path, groups=("contractors",))
    checksum = get(url, token).json()["checksum"]
    response = get(url, token, **{"If-None-Match": header.format(c=checksum)})
    assert response.status_code == 200
    assert response.json()["checksum"] == checksum


def test_checksum_of_another_policy_does_not_match(gateway: tuple[str, Path]) -> None:
    url, path = gateway
    contractors = get(url, token_for(path, groups=("contractors",))).json()["checksum"]
    response = get(url, token_for(path, groups=("eng",)), **{"If-None-Match": f'"{contractors}"'})
    assert response.status_code == 200


def test_no_bearer_is_401(gateway: tuple[str, Path]) -> None:
    url, _ = gateway
    response = get(url, None)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert get(url, "not-a-token").status_code == 401


def test_no_matching_policy_is_404(tmp_path: Path, database_url: str) -> None:
    path = _config(tmp_path, database_url, {"managed": {"policies": POLICIES[:3]}})
    with live_gateway(path) as live:
        response = get(live.url, token_for(path, groups=("eng",)))
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"
        assert get(live.url, token_for(path, groups=("contractors",))).status_code == 200


def test_no_policies_at_all_is_404(tmp_path: Path, database_url: str) -> None:
    path = _config(tmp_path, database_url, {"managed": {"policies": []}})
    with live_gateway(path) as live:
        assert get(live.url, token_for(path)).status_code == 404


def test_empty_policy_is_200_with_empty_settings(tmp_path: Path, database_url: str) -> None:
    path = _config(tmp_path, database_url, {"managed": {"policies": [{"name": "bare"}]}})
    with live_gateway(path) as live:
        token = token_for(path)
        response = get(live.url, token)
        assert response.status_code == 200
        body = response.json()
        assert body["settings"] == {}
        assert body["checksum"] == EMPTY
        assert response.headers["ETag"] == f'"{EMPTY}"'
        assert get(live.url, token, **{"If-None-Match": f'"{EMPTY}"'}).status_code == 304


def test_edit_changes_checksum_and_uuid(tmp_path: Path, database_url: str) -> None:
    before = _config(tmp_path, database_url, name="a.yaml")
    edited = [dict(p) for p in POLICIES]
    edited[1] = {**edited[1], "settings": {"availableModels": ["haiku", "sonnet"]}}
    after = _config(tmp_path, database_url, {"managed": {"policies": edited}}, name="b.yaml")
    with live_gateway(before) as live:
        old = get(live.url, token_for(before, groups=("contractors",))).json()
    with live_gateway(after) as live:
        token = token_for(after, groups=("contractors",))
        new = get(live.url, token).json()
        # A client holding the old settings gets the new ones, not a 304.
        assert get(live.url, token, **{"If-None-Match": f'"{old["checksum"]}"'}).status_code == 200
    assert new["checksum"] != old["checksum"] and new["uuid"] != old["uuid"]
    assert new["settings"]["availableModels"] == ["haiku", "sonnet"]


def test_served_available_models_are_what_inference_enforces(tmp_path: Path, database_url: str) -> None:
    path = _config(tmp_path, database_url)
    config.use(str(path))
    cfg = config.current()
    for groups in (("ml-research",), ("contractors",), ("finance",), ()):
        found = policy.resolve(cfg, groups)
        assert found is not None
        served = managed.served_for(cfg, groups)
        assert served is not None
        listed = served.settings.get("availableModels")
        for model in cfg.models:
            shown = listed is None or any(models.entry_matches(e, model.id) for e in listed)
            assert shown == policy.model_allowed(found[1], model.id), (groups, model.id)


def test_forward_to_pushes_claude_codes_otlp_env_and_policy_env_wins(tmp_path: Path, database_url: str) -> None:
    path = _config(
        tmp_path,
        database_url,
        {
            "telemetry": {"forward_to": [{"url": "http://127.0.0.1:9/otel", "metrics": True, "logs": True}]},
            "managed": {
                "policies": [
                    {"match": {"groups": ["quiet"]}, "settings": {"env": {"OTEL_LOGS_EXPORTER": "none"}}},
                    {"settings": {}},
                ]
            },
        },
    )
    with live_gateway(path) as live:
        body = get(live.url, token_for(path)).json()
        env = body["settings"]["env"]
        assert env == {
            "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:8080",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
        assert body["checksum"] == checksum.checksum(body["settings"])
        quiet = get(live.url, token_for(path, groups=("quiet",))).json()["settings"]["env"]
        assert quiet["OTEL_LOGS_EXPORTER"] == "none" and quiet["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1"


def test_push_client_env_can_be_turned_off(tmp_path: Path, database_url: str) -> None:
    path = _config(
        tmp_path,
        database_url,
        {"telemetry": {"forward_to": [{"url": "http://127.0.0.1:9"}], "push_client_env": False}},
    )
    with live_gateway(path) as live:
        assert "env" not in get(live.url, token_for(path)).json()["settings"]


def _check(policies: list[dict[str, Any]], database_url: str) -> config.Loaded:
    import yaml

    data = deep_merge(base_config(database_url), {"managed": {"policies": policies}})
    return config.parse(yaml.safe_dump(data))


def test_config_check_warns_where_claude_code_and_the_gateway_would_disagree(database_url: str) -> None:
    loaded = _check(
        [
            {"match": {"groups": ["a"]}, "settings": {"availableModels": ["claude-sonnet-*"]}},
            {"match": {"groups": ["b"]}, "settings": {"availableModels": ["haiku"], "model": "opus"}},
            {"match": {"groups": ["c"]}, "settings": {"availableModels": []}},
            {"settings": {"availableModels": ["sonnet", "haiku"], "deniedModels": ["claude-haiku-4-5"]}},
        ],
        database_url,
    )
    text = "\n".join(loaded.warnings)
    assert "managed.policies[0].settings.availableModels[0]" in text and "glob" in text
    assert "managed.policies[1].settings.model" in text
    assert "managed.policies[2].settings.availableModels: an empty list" in text
    assert "managed.policies[3]" not in text  # deniedModels is enforced by the gateway too


def test_gateway_reads_available_and_denied_models_as_claude_code_does(database_url: str) -> None:
    """Prefix entries, `availableModelsMatch: exact` and `deniedModels` mean the same on both sides."""
    from common import policy as policies

    loaded = _check(
        [
            {"match": {"groups": ["a"]}, "settings": {"availableModels": ["claude-sonnet-4", "opus-4-5"]}},
            {
                "match": {"groups": ["b"]},
                "settings": {"availableModels": ["claude-sonnet-4"], "availableModelsMatch": "exact"},
            },
            {"settings": {"availableModels": ["sonnet", "haiku"], "deniedModels": ["claude-haiku-4-5"]}},
        ],
        database_url,
    )
    assert loaded.warnings == []
    cfg = loaded.config
    prefix, exact, denying = (p for p in cfg.managed.policies)
    assert policies.model_allowed(prefix, "claude-sonnet-4-5-20250929")  # extends claude-sonnet-4
    assert policies.model_allowed(prefix, "claude-opus-4-5")  # `opus-4-5` without `claude-`
    assert not policies.model_allowed(prefix, "claude-opus-4-1")
    assert policies.model_allowed(exact, "claude-sonnet-4-20250514")
    assert not policies.model_allowed(exact, "claude-sonnet-4-5")
    assert policies.model_allowed(denying, "claude-sonnet-4-5")
    assert not policies.model_allowed(denying, "claude-haiku-4-5-20251001")
    assert policies.allowed_models(cfg, denying) == ["claude-sonnet-4-5"]


def test_config_check_refuses_settings_that_are_not_json(database_url: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        _check([{"settings": {"cleanupPeriodDays": float("inf")}}], database_url)
    assert "managed.policies[0].settings.cleanupPeriodDays" in str(caught.value)
    with pytest.raises(config.ConfigError) as caught:
        _check([{"settings": {"env": {1: "x"}}}], database_url)
    assert "quote it" in str(caught.value)


def test_served_responses_are_built_once_per_config_version() -> None:
    cfg = parsed_config({"managed": {"policies": POLICIES}})
    served = managed.served_for(cfg, ("finance",))
    assert served is not None and managed.served_for(cfg, ("Accounting",)) is served  # same policy, same object
    twin = managed.served_for(parsed_config({"managed": {"policies": POLICIES}}), ("finance",))
    assert twin is not None and twin is not served and twin.body == served.body  # another version, same content
    edited = [dict(p) for p in POLICIES]
    edited[2] = {**edited[2], "settings": {"availableModels": ["haiku"]}}
    changed = managed.served_for(parsed_config({"managed": {"policies": edited}}), ("finance",))
    assert changed is not None and changed.checksum != served.checksum
    assert managed.served_for(cfg, ("finance",)) is served  # the older version keeps its own responses
