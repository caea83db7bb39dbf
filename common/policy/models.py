"""The models a policy allows: its `settings.availableModels`, read exactly as Claude Code reads it.

The list Claude Code shows in its picker is the list the gateway enforces
(`common.core.models.allowed_by_settings` is the one reading of those rules).
"""

from __future__ import annotations

from common.config import Config, Policy
from common.core import models
from common.core.errors import GatewayError
from common.policy.resolution import policy_name


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


def check_model(cfg: Config, index: int, policy: Policy, model_id: str) -> None:
    """Refuse (400 `invalid_request_error`) a model the policy does not allow, naming those it does."""
    if model_allowed(policy, model_id):
        return
    allowed = allowed_models(cfg, policy) or list(available_entries(policy) or [])
    raise GatewayError(
        400,
        f"The model '{model_id}' is not allowed for you by the gateway's policy '{policy_name(index, policy)}'. "
        f"Allowed models: {', '.join(allowed) if allowed else 'none'}.",
        "invalid_request_error",
    )
