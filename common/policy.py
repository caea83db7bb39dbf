"""Per-group policy from gateway.yaml: first match wins, the catch-all is last.

One resolution serves inference (models and tools enforced per request),
managed settings (the settings block served to Claude Code) and `explain`.
The models a policy allows are its `settings.availableModels`: the list
Claude Code shows is the list the gateway enforces.
"""

from __future__ import annotations

from common import models
from common.config import Config, Policy


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
    entries = available_entries(policy)
    if entries is None:
        return True
    return any(models.entry_matches(entry, model_id) for entry in entries)


def allowed_models(cfg: Config, policy: Policy) -> list[str]:
    """Configured model ids this policy allows, in config order."""
    return [m.id for m in cfg.models if model_allowed(policy, m.id)]
