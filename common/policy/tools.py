"""A policy's tool rules, enforced on a request body: allow/deny by tool name, reject or strip.

The rules apply to the names of the request's `tools` (custom and server tools
alike) and of the `tool_use` blocks in its message history. Names compare
case-insensitively with `*`/`?` globs, so `bash` or `BASH` is the `Bash` a rule
denies. A deny rule wins over an allow rule; a non-empty allow list admits only
what it names.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from common.config import Policy, Tools
from common.core.errors import GatewayError
from common.policy.resolution import policy_name

_TOOL_USE_TYPES = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


def _tool_patterns(patterns: list[str]) -> tuple[str, ...]:
    return tuple(p.strip().lower() for p in patterns if p.strip())


def tool_allowed(tools: Tools, name: str) -> bool:
    lowered = name.strip().lower()
    if any(fnmatch.fnmatchcase(lowered, p) for p in _tool_patterns(tools.deny)):
        return False
    allow = _tool_patterns(tools.allow)
    return not allow or any(fnmatch.fnmatchcase(lowered, p) for p in allow)


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
                if isinstance(name, str) and not tool_allowed(tools, name):
                    return name
    return None


def apply_tools(index: int, policy: Policy, body: dict[str, Any]) -> list[str]:
    """Enforce the policy's tool rules on a request body, in place; return the stripped names.

    `mode: reject` refuses a denied tool with 403 `permission_error`; `mode:
    strip` removes it (and a `tool_choice` that names it, or that requires a
    tool when none is left). A denied tool in the message history is refused in
    both modes: removing a past `tool_use` would orphan its `tool_result`.
    """
    rules = policy.tools
    if not has_tool_rules(rules):
        return []
    where = policy_name(index, policy)
    stripped: list[str] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        kept: list[Any] = []
        for tool in tools:
            name = tool.get("name") if isinstance(tool, dict) else None
            if isinstance(name, str) and not tool_allowed(rules, name):
                if rules.mode == "reject":
                    raise GatewayError(
                        403, f"The tool '{name}' is not allowed by the gateway's policy '{where}'.", "permission_error"
                    )
                stripped.append(name)
                continue
            kept.append(tool)
        if stripped:
            choice = body.get("tool_choice")
            if kept:
                body["tools"] = kept
                if isinstance(choice, dict) and choice.get("type") == "tool" and choice.get("name") in stripped:
                    body.pop("tool_choice", None)
            else:
                body.pop("tools", None)
                if isinstance(choice, dict) and choice.get("type") in ("tool", "any"):
                    body.pop("tool_choice", None)
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
