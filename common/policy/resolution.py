"""Which policy applies to a caller: the first whose `match.groups` meets their groups, the catch-all last.

One resolution serves inference (models and tools enforced per request),
`/v1/models`, managed settings (the settings block served to Claude Code) and
`explain`, so what a client is shown is what the gateway enforces.
"""

from __future__ import annotations

from common.config import Config, Policy
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


def for_inference(cfg: Config, groups: tuple[str, ...] | list[str]) -> tuple[int, Policy] | None:
    """The caller's policy for model calls; None when no policies are configured (everything allowed).

    With policies configured and none matching (no catch-all), the caller may
    use no model at all: 403 `permission_error`.
    """
    if not cfg.managed.policies:
        return None
    found = resolve(cfg, groups)
    if found is None:
        raise GatewayError(
            403,
            "No gateway policy applies to your groups, so you may not use models through this gateway; "
            "ask an administrator to add your group to managed.policies.",
            "permission_error",
        )
    return found
