"""A user's effective policy, explained: which policy applies and why, its models, tools and settings.

What `gateway explain` prints and the admin API's `policy/explain` serves
(with the spend part added there). Decisions only: the same resolution and
model rules inference enforces.
"""

from __future__ import annotations

from typing import Any

from common.config import Config
from common.policy.models import allowed_models, available_entries
from common.policy.resolution import policy_name, resolve


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
