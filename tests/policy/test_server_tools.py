"""Tool rules reach the API's server tools and the MCP connector (issue 14, finding 7).

A policy denying WebFetch, Bash and `mcp__*` used to forward `web_fetch_*`,
`web_search_*` and `code_execution_*` tools, an `mcp_toolset` and a top-level
`mcp_servers` list: their names are not the client names the rules use.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from common import policy
from common.config import Policy, Tools
from common.core.errors import GatewayError

DENY = ["WebFetch", "WebSearch", "Bash", "mcp__*"]


def _policy(mode: str, deny: list[str] = DENY, allow: list[str] | None = None) -> Policy:
    return Policy(name="contractors", tools=Tools(deny=deny, allow=allow or [], mode=mode))  # type: ignore[arg-type]


SERVER_TOOLS: list[dict[str, Any]] = [
    {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 3},
    {"type": "web_search_20250305", "name": "web_search"},
    {"type": "code_execution_20250825", "name": "code_execution"},
    {"type": "code_execution_20250522", "name": "code_execution"},
    {"type": "bash_20250124", "name": "bash"},
    {"type": "mcp_toolset", "mcp_server_name": "github"},
]


def _body(*tools: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "Read", "input_schema": {"type": "object"}}, *copy.deepcopy(list(tools))],
        **extra,
    }


@pytest.mark.parametrize("tool", SERVER_TOOLS, ids=lambda t: str(t["type"]))
def test_each_server_tool_is_refused_in_reject_mode(tool: dict[str, Any]) -> None:
    with pytest.raises(GatewayError) as refused:
        policy.apply_tools(0, _policy("reject"), _body(tool))
    assert refused.value.status == 403 and "not allowed" in refused.value.message


@pytest.mark.parametrize("tool", SERVER_TOOLS, ids=lambda t: str(t["type"]))
def test_each_server_tool_is_stripped_in_strip_mode(tool: dict[str, Any]) -> None:
    body = _body(tool)
    stripped = policy.apply_tools(0, _policy("strip"), body)
    assert stripped and [t.get("name") for t in body["tools"]] == ["Read"]


def test_mcp_servers_list_is_refused_or_stripped_with_its_toolset() -> None:
    servers = [{"type": "url", "url": "https://mcp.example/sse", "name": "github"}]
    with pytest.raises(GatewayError):
        policy.apply_tools(0, _policy("reject"), _body(mcp_servers=servers))
    body = _body({"type": "mcp_toolset", "mcp_server_name": "github"}, mcp_servers=servers)
    assert policy.apply_tools(0, _policy("strip"), body) == ["mcp__github"]
    assert "mcp_servers" not in body and [t.get("name") for t in body["tools"]] == ["Read"]


def test_mcp_server_admitted_by_rules_naming_its_tools() -> None:
    only_jira = _policy("reject", deny=["mcp__github__*"])
    servers = [
        {"type": "url", "url": "https://a/sse", "name": "jira"},
        {"type": "url", "url": "https://b/sse", "name": "github"},
    ]
    body = _body({"type": "mcp_toolset", "mcp_server_name": "jira"}, mcp_servers=servers[:1])
    assert policy.apply_tools(0, only_jira, body) == []
    with pytest.raises(GatewayError):
        policy.apply_tools(0, only_jira, _body(mcp_servers=servers))
    # One denied tool of a server: the server is admitted only with that tool left out.
    one_tool = _policy("reject", deny=["mcp__jira__delete_issue"])
    with pytest.raises(GatewayError):
        policy.apply_tools(0, one_tool, _body(mcp_servers=servers[:1]))
    limited = [{**servers[0], "tool_configuration": {"allowed_tools": ["get_issue"]}}]
    assert policy.apply_tools(0, one_tool, _body(mcp_servers=limited)) == []
    toolset = {
        "type": "mcp_toolset",
        "mcp_server_name": "jira",
        "default_config": {"enabled": False},
        "configs": {"get_issue": {"enabled": True}},
    }
    assert policy.apply_tools(0, one_tool, _body(toolset, mcp_servers=servers[:1])) == []
    # An allow list admits a server only when it covers all of its tools.
    allow = _policy("reject", deny=[], allow=["Read", "mcp__jira__*"])
    assert policy.apply_tools(0, allow, _body(mcp_servers=servers[:1])) == []
    with pytest.raises(GatewayError):
        policy.apply_tools(0, _policy("reject", deny=[], allow=["Read", "mcp__jira__get*"]), _body(mcp_servers=servers))


def test_allow_lists_admit_server_tools_by_their_client_name() -> None:
    allow = _policy("reject", deny=[], allow=["Read", "WebFetch"])
    body = _body({"type": "web_fetch_20250910", "name": "web_fetch"})
    assert policy.apply_tools(0, allow, body) == [] and len(body["tools"]) == 2
    with pytest.raises(GatewayError):
        policy.apply_tools(0, allow, _body({"type": "web_search_20250305", "name": "web_search"}))


def test_history_server_and_mcp_tool_uses_are_refused() -> None:
    for block in (
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_fetch", "input": {}},
        {"type": "server_tool_use", "id": "srvtoolu_2", "name": "bash_code_execution", "input": {}},
        {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "create_issue", "server_name": "github", "input": {}},
    ):
        body = _body(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": [block]}])
        with pytest.raises(GatewayError) as refused:
            policy.apply_tools(0, _policy("strip"), body)
        assert "conversation uses the tool" in refused.value.message


def test_a_policy_without_those_rules_forwards_them_untouched() -> None:
    body = _body(*SERVER_TOOLS, mcp_servers=[{"type": "url", "url": "https://a/sse", "name": "github"}])
    before = copy.deepcopy(body)
    assert policy.apply_tools(0, _policy("strip", deny=["Edit"]), body) == []
    assert body == before
