"""Per-group policy from gateway.yaml: first match wins, the catch-all is last.

One resolution serves inference (models and tools enforced per request),
managed settings (the settings block served to Claude Code) and `explain`.
The models a policy allows are its `settings.availableModels`: the list
Claude Code shows is the list the gateway enforces.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from common.config import Config, Policy, Tools
from common.core import models
from common.core.errors import GatewayError


def resolve(cfg: Config, groups: tuple[str, ...] | list[str]) -> tuple[int, Policy] | None:
    """(index, policy) of the first policy whose match.groups meets `groups`; None if none applies."""
    have = {g.lower() for g in groups}
    for index, policy in enumerate(cfg.managed.policies):
        if policy.is_catch_all:
            return index, policy
        assert policy.match is not None
        if any(g.lower() in have for g in policy.match.groups):
            return index, policy
    return None


def policy_name(index: int, policy: Policy) -> str:
    return policy.name or f"managed.policies[{index}]"


def available_entries(policy: Policy) -> list[str] | None:
    """The policy's availableModels entries; None means every configured model."""
    entries = policy.settings.get("availableModels")
    if entries is None:
        return None
    return [e for e in entries if isinstance(e, str)]


def model_allowed(policy: Policy, model_id: str) -> bool:
    """The policy's model rules exactly as Claude Code applies them to its picker."""
    return models.allowed_by_settings(policy.settings, model_id)


def allowed_models(cfg: Config, policy: Policy) -> list[str]:
    """Configured model ids this policy allows, in config order."""
    return [m.id for m in cfg.models if model_allowed(policy, m.id)]


# --- tools ---------------------------------------------------------------------------
#
# A policy's `tools` rules apply to the names of the request's `tools` (custom
# and server tools alike) and of the `tool_use` blocks in its message history.
# Names compare case-insensitively with `*`/`?` globs, so `bash` or `BASH` is
# the `Bash` a rule denies. A deny rule wins over an allow rule; a non-empty
# allow list admits only what it names.

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


# --- explain -------------------------------------------------------------------------


def explain(cfg: Config, email: str, groups: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The effective policy of a user, as `gateway explain` and the admin API show it."""
    out: dict[str, Any] = {"email": email, "groups": list(groups)}
    if not cfg.managed.policies:
        out.update(
            policy=None,
            reason="no managed.policies are configured: every configured model and tool is allowed",
            models={"entries": None, "allowed": [m.id for m in cfg.models]},
            tools={"allow": [], "deny": [], "mode": "reject"},
            settings={},
        )
        return out
    found = resolve(cfg, groups)
    if found is None:
        out.update(
            policy=None,
            reason="no policy matches these groups and there is no catch-all: inference is refused (403)",
            models={"entries": [], "allowed": []},
            tools=None,
            settings=None,
        )
        return out
    index, policy = found
    matched = (
        "catch-all (no match.groups)"
        if policy.is_catch_all
        else "match.groups " + ", ".join(g for g in policy.match.groups if g.lower() in {x.lower() for x in groups})  # type: ignore[union-attr]
    )
    out.update(
        policy=policy_name(index, policy),
        policy_index=index,
        reason=f"first matching policy ({matched})",
        models={"entries": available_entries(policy), "allowed": allowed_models(cfg, policy)},
        tools={"allow": list(policy.tools.allow), "deny": list(policy.tools.deny), "mode": policy.tools.mode},
        settings=policy.settings,
    )
    return out
