"""Tool rules, `explain` (and the `gateway explain` command), the anonymous-upstream config rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import base_config, write_config

from common import config, policy
from common.config import ConfigError, Tools
from common.core.errors import GatewayError

ROOT_DIR = Path(__file__).resolve().parents[2]

POLICIES = [
    {"name": "ml", "match": {"groups": ["ml-research"]}, "settings": {"availableModels": ["opus", "sonnet"]}},
    {
        "name": "contractors",
        "match": {"groups": ["contractors"]},
        "settings": {"availableModels": ["haiku"]},
        "tools": {"deny": ["WebFetch", "Bash", "mcp__*"], "mode": "strip"},
    },
    {"name": "everyone", "settings": {"availableModels": ["sonnet", "haiku"]}, "tools": {"deny": ["WebFetch"]}},
]


def _cfg(**extra: Any) -> config.Config:
    data = base_config("postgresql://postgres@127.0.0.1:9/unused")
    data["managed"] = {"policies": POLICIES}
    data.update(extra)
    import yaml

    return config.parse(yaml.safe_dump(data)).config


def test_tool_rules_are_case_insensitive_globs_and_deny_wins() -> None:
    rules = Tools(allow=["Read", "mcp__jira__*"], deny=["mcp__jira__delete*"])
    assert policy.tool_allowed(rules, "read") and policy.tool_allowed(rules, "MCP__Jira__get")
    assert not policy.tool_allowed(rules, "Bash")
    assert not policy.tool_allowed(rules, "mcp__JIRA__DELETE_issue")
    assert policy.tool_allowed(Tools(), "anything")


@given(st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != ""))
def test_a_denied_name_is_denied_in_any_case(name: str) -> None:
    rules = Tools(deny=[name])
    for variant in (name, name.upper(), name.lower(), name.swapcase()):
        if variant.lower() == name.lower() and not any(c in name for c in "*?["):
            assert not policy.tool_allowed(rules, variant)


def test_apply_tools_reject_and_strip() -> None:
    cfg = _cfg()
    index, contractors = policy.resolve(cfg, ["contractors"])  # type: ignore[misc]
    body: dict[str, Any] = {"tools": [{"name": "BASH"}, {"name": "Read"}], "messages": []}
    assert policy.apply_tools(index, contractors, body) == ["BASH"]
    assert body["tools"] == [{"name": "Read"}]
    index, everyone = policy.resolve(cfg, [])  # type: ignore[misc]
    with pytest.raises(GatewayError) as caught:
        policy.apply_tools(index, everyone, {"tools": [{"name": "webFetch"}], "messages": []})
    assert (caught.value.status, caught.value.error_type) == (403, "permission_error")
    assert "'webFetch'" in caught.value.message and "everyone" in caught.value.message


def test_explain() -> None:
    cfg = _cfg()
    out = policy.explain(cfg, "c@example.com", ["Contractors"])
    assert out["policy"] == "contractors" and out["policy_index"] == 1
    assert out["models"] == {"entries": ["haiku"], "allowed": ["claude-haiku-4-5"]}
    assert out["tools"] == {"allow": [], "deny": ["WebFetch", "Bash", "mcp__*"], "mode": "strip"}
    assert "match.groups contractors" in out["reason"]
    fallback = policy.explain(cfg, "x@example.com", [])
    assert fallback["policy"] == "everyone" and "catch-all" in fallback["reason"]
    assert fallback["models"]["allowed"] == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    no_catch_all = _cfg(managed={"policies": POLICIES[:2]})
    assert policy.explain(no_catch_all, "x@example.com", ["eng"])["policy"] is None


def test_explain_command(tmp_path: Path) -> None:
    data = base_config("postgresql://postgres@127.0.0.1:9/unused")
    data["managed"] = {"policies": POLICIES}
    path = write_config(tmp_path, data)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "explain",
            "--email",
            "a@example.com",
            "--groups",
            "ml-research,x",
            "--config",
            str(path),
        ],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["policy"] == "ml" and out["models"]["allowed"] == ["claude-opus-4-5", "claude-sonnet-4-5"]


def test_anonymous_vertex_auth_needs_a_loopback_base_url() -> None:
    data = base_config("postgresql://postgres@127.0.0.1:9/unused")
    data["upstreams"][0]["base_url"] = "https://vertex.example.com/v1"
    import yaml

    with pytest.raises(ConfigError) as caught:
        config.parse(yaml.safe_dump(data))
    assert any("upstreams[0].auth.anonymous" in p and "loopback" in p for p in caught.value.problems)
    del data["upstreams"][0]["base_url"]
    with pytest.raises(ConfigError):
        config.parse(yaml.safe_dump(data))
