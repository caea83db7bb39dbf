"""A policy's tool rules, enforced on a request body: allow/deny by tool name, reject or strip.

The rules apply to the names of the request's `tools` (custom and server tools
alike), to the MCP connector (`mcp_toolset` tools and the top-level
`mcp_servers` list) and to the tool-use blocks of its message history. Names
compare case-insensitively with `*`/`?` globs, so `bash` or `BASH` is the
`Bash` a rule denies. A deny rule wins over an allow rule; a non-empty allow
list admits only what it names.

A rule names Claude Code's tools; the API's server tools and the MCP connector
do the same work under other names, so each carries the client names of what
it does (`SERVER_TOOL_ALIASES`, documented in docs/inference.md): a tool is
denied when any of its names is denied, and, under an allow list, admitted
when any of them is allowed. An MCP server `S` is the tools `mcp__S__<tool>`,
as Claude Code names them.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from common.config import Policy, Tools
from common.core.errors import GatewayError
from common.policy.resolution import policy_name

_TOOL_USE_TYPES = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})

# Server (and Anthropic-defined) tool -> the Claude Code tools that do the same thing.
# Keyed by the tool's `type` without its version date (web_fetch_20250910 -> web_fetch)
# and by the names their tool-use blocks carry in the history.
SERVER_TOOL_ALIASES: dict[str, tuple[str, ...]] = {
    "web_fetch": ("WebFetch",),
    "web_search": ("WebSearch",),
    "code_execution": ("Bash",),
    "bash_code_execution": ("Bash",),
    "text_editor_code_execution": ("Bash", "Edit", "Write"),
    "bash": ("Bash",),
    "text_editor": ("Edit", "Write"),
    "str_replace_based_edit_tool": ("Edit", "Write"),
    "str_replace_editor": ("Edit", "Write"),
}

_VERSIONED = re.compile(r"^(?P<base>[a-z_]+?)_(?P<date>\d{8})$")


def _tool_patterns(patterns: list[str]) -> tuple[str, ...]:
    return tuple(p.strip().lower() for p in patterns if p.strip())


def tool_allowed(tools: Tools, name: str, *aliases: str) -> bool:
    """Whether the rules admit the tool `name` (also known as `aliases`)."""
    names = [n.strip().lower() for n in (name, *aliases)]
    if any(fnmatch.fnmatchcase(n, p) for p in _tool_patterns(tools.deny) for n in names):
        return False
    allow = _tool_patterns(tools.allow)
    return not allow or any(fnmatch.fnmatchcase(n, p) for p in allow for n in names)


def aliases(kind: str | None, name: str | None) -> tuple[str, ...]:
    """The client tool names a tool of API `type` `kind` (or a tool-use block named `name`) stands for."""
    found: list[str] = []
    for key in (kind, name):
        if not isinstance(key, str):
            continue
        lowered = key.strip().lower()
        versioned = _VERSIONED.match(lowered)
        found.extend(SERVER_TOOL_ALIASES.get(versioned.group("base") if versioned else lowered, ()))
    return tuple(dict.fromkeys(found))


def _literal_prefix(pattern: str) -> str:
    cut = min((i for i, ch in enumerate(pattern) if ch in "*?["), default=len(pattern))
    return pattern[:cut]


def server_allowed(tools: Tools, server: str, listed: list[str] | None) -> bool:
    """Whether the rules admit MCP server `server`: its tools `listed`, or (None) any tool it has."""
    if listed is not None:
        return all(tool_allowed(tools, f"mcp__{server}__{tool}") for tool in listed)
    prefix = f"mcp__{server}__".lower()
    for pattern in _tool_patterns(tools.deny):
        literal = _literal_prefix(pattern)
        if literal.startswith(prefix) or prefix.startswith(literal):
            return False  # the rule may match one of its tools: unknown tools cannot be admitted
    allow = _tool_patterns(tools.allow)
    return not allow or any(fnmatch.fnmatchcase(prefix + "*", p) for p in allow)


def has_tool_rules(tools: Tools) -> bool:
    return bool(tools.allow or tools.deny)


def denied_history_tool(tools: Tools, messages: list[Any]) -> str | None:
    """The first denied tool name a `tool_use` block of the history calls, if any."""
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if isinstance(block, dict) and block.get("type") in _TOOL_USE_TYPES:
                name = block.get("name")
                if not isinstance(name, str):
                    continue
                server = block.get("server_name")
                if block.get("type") == "mcp_tool_use" and isinstance(server, str):
                    if not tool_allowed(tools, f"mcp__{server}__{name}"):
                        return f"mcp__{server}__{name}"
                elif not tool_allowed(tools, name, *aliases(None, name)):
                    return name
    return None


def _toolset_tools(tool: dict[str, Any]) -> list[str] | None:
    """The tools an `mcp_toolset` enables, or None when it enables every tool of its server."""
    default = tool.get("default_config")
    configs = tool.get("configs")
    if isinstance(default, dict) and default.get("enabled") is False:
        if not isinstance(configs, dict):
            return []
        return [str(n) for n, c in configs.items() if isinstance(c, dict) and c.get("enabled") is True]
    return None


def _server_tools(server: dict[str, Any]) -> list[str] | None:
    """The tools an `mcp_servers` entry allows (`tool_configuration.allowed_tools`), None for all."""
    configuration = server.get("tool_configuration")
    if isinstance(configuration, dict):
        if configuration.get("enabled") is False:
            return []
        listed = configuration.get("allowed_tools")
        if isinstance(listed, list):
            return [str(t) for t in listed]
    return None


def _tool_verdict(rules: Tools, tool: Any) -> tuple[str, str | None] | None:
    """(label, MCP server or None) when the rules deny `tool`, None when they admit it."""
    if not isinstance(tool, dict):
        return None
    kind, name = tool.get("type"), tool.get("name")
    if kind == "mcp_toolset":
        server = tool.get("mcp_server_name")
        if isinstance(server, str) and not server_allowed(rules, server, _toolset_tools(tool)):
            return f"mcp__{server}", server
        return None
    if isinstance(name, str) and not tool_allowed(rules, name, *aliases(kind if isinstance(kind, str) else None, name)):
        return name, None
    if not isinstance(name, str) and isinstance(kind, str) and aliases(kind, None):
        label = kind  # a server tool without a name is still the tool its type says
        if not tool_allowed(rules, label, *aliases(kind, None)):
            return label, None
    return None


def apply_tools(index: int, policy: Policy, body: dict[str, Any]) -> list[str]:
    """Enforce the policy's tool rules on a request body, in place; return the stripped names.

    `mode: reject` refuses a denied tool (or MCP server) with 403
    `permission_error`; `mode: strip` removes it (and a `tool_choice` that names
    it, or that requires a tool when none is left; and an MCP server's toolset
    with its `mcp_servers` entry). A denied tool in the message history is
    refused in both modes: removing a past tool use would orphan its result.
    """
    rules = policy.tools
    if not has_tool_rules(rules):
        return []
    where = policy_name(index, policy)

    def refuse(label: str) -> GatewayError:
        return GatewayError(
            403, f"The tool '{label}' is not allowed by the gateway's policy '{where}'.", "permission_error"
        )

    stripped: list[str] = []
    denied_servers: set[str] = set()
    servers = body.get("mcp_servers")
    tools = body.get("tools")
    # With the mcp_toolset form the toolset says which of a server's tools are on; it is checked below.
    toolsets = {
        t.get("mcp_server_name")
        for t in (tools if isinstance(tools, list) else [])
        if isinstance(t, dict) and t.get("type") == "mcp_toolset"
    }
    if isinstance(servers, list):
        kept_servers: list[Any] = []
        for server in servers:
            name = server.get("name") if isinstance(server, dict) else None
            if name in toolsets:
                kept_servers.append(server)
                continue
            if isinstance(name, str) and not server_allowed(rules, name, _server_tools(server)):
                if rules.mode == "reject":
                    raise refuse(f"mcp__{name}")
                stripped.append(f"mcp__{name}")
                denied_servers.add(name)
                continue
            kept_servers.append(server)
        if kept_servers:
            body["mcp_servers"] = kept_servers
        else:
            body.pop("mcp_servers", None)
    if isinstance(tools, list):
        kept: list[Any] = []
        removed: list[str] = []
        for tool in tools:
            verdict = _tool_verdict(rules, tool)
            orphan = (
                isinstance(tool, dict)
                and tool.get("type") == "mcp_toolset"
                and tool.get("mcp_server_name") in denied_servers
            )
            if verdict is not None:
                if rules.mode == "reject":
                    raise refuse(verdict[0])
                removed.append(verdict[0])
                if verdict[1] is not None:
                    denied_servers.add(verdict[1])
                continue
            if orphan:  # its server entry was stripped above: the API refuses a toolset without one
                continue
            kept.append(tool)
        stripped.extend(removed)
        if len(kept) != len(tools):
            choice = body.get("tool_choice")
            if kept:
                body["tools"] = kept
                if isinstance(choice, dict) and choice.get("type") == "tool" and choice.get("name") in removed:
                    body.pop("tool_choice", None)
            else:
                body.pop("tools", None)
                if isinstance(choice, dict) and choice.get("type") in ("tool", "any"):
                    body.pop("tool_choice", None)
    if denied_servers and isinstance(body.get("mcp_servers"), list):
        # A toolset denied in `tools` takes its server entry with it.
        left = [s for s in body["mcp_servers"] if not (isinstance(s, dict) and s.get("name") in denied_servers)]
        if left:
            body["mcp_servers"] = left
        else:
            body.pop("mcp_servers", None)
    messages = body.get("messages")
    if isinstance(messages, list):
        name = denied_history_tool(rules, messages)
        if name is not None:
            raise GatewayError(
                403,
                f"The conversation uses the tool '{name}', which the gateway's policy '{where}' does not allow; "
                "start a new conversation.",
                "permission_error",
            )
    return stripped
