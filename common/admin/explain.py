"""`GET /v1/organizations/policy/explain?email=&groups=`: a user's effective policy.

Which managed policy applies (first match, catch-all last), the models and
tools it allows, the settings Claude Code receives, and every spend cap that
applies with its standing. `common.policy.rules.explain` (branch `inference`) is
used when present; until then the policy part comes from `policy.resolve`.
"""

from __future__ import annotations

from typing import Any

from flask import Request, Response

from common.admin import api
from common.config import Config
from common.core import periods
from common.core.identity import Identity
from common.db import pool as store
from common.http.app import json_response
from common.policy import rules as policy
from common.spend import caps, pricing


def _policy_part(cfg: Config, email: str, groups: list[str]) -> dict[str, Any]:
    explain = getattr(policy, "explain", None)
    if callable(explain):
        result = explain(cfg, email, groups)
        return dict(result) if isinstance(result, dict) else {"policy": result}
    # Until common.policy.rules.explain (branch `inference`) lands: the same shape, from policy.resolve.
    found = policy.resolve(cfg, groups)
    if found is None:
        return {
            "policy": None,
            "reason": "no policy matches these groups and there is no catch-all",
            "models": {"entries": [], "allowed": []},
            "tools": None,
            "settings": None,
        }
    index, chosen = found
    return {
        "policy": policy.policy_name(index, chosen),
        "policy_index": index,
        "reason": "first matching policy",
        "models": {"entries": policy.available_entries(chosen), "allowed": policy.allowed_models(cfg, chosen)},
        "tools": {"allow": list(chosen.tools.allow), "deny": list(chosen.tools.deny), "mode": chosen.tools.mode},
        "settings": chosen.settings,
    }


def spend_part(cfg: Config, identity: Identity) -> dict[str, Any]:
    applicable = caps.applicable_caps(cfg, identity, caps.load_limits(store.get()))
    day = periods.today()
    figures = caps.standings(store.get(), applicable, day)
    return {
        "group_limit_mode": cfg.admin.group_limit_mode if cfg.admin else "min",
        "caps": [
            {
                "scope": s.cap.scope,
                "scope_id": s.cap.scope_id or None,
                "pooled": s.cap.pooled,
                "period": s.cap.period,
                "amount": pricing.cents_string(s.cap.cap_micros),
                "period_to_date_spend": pricing.cents_string(s.spent_micros),
                "in_flight": pricing.cents_string(s.held_micros),
                "blocked": s.blocked,
                "resets_at": periods.reset_at(s.cap.period, day).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for s in figures
        ],
    }


def explain(request: Request) -> Response:
    who = api.caller(request, "read")
    email = (request.args.get("email") or "").strip()
    if not email or "@" not in email:
        raise api.invalid("email", "required: the user's email address")
    groups = [p.strip() for v in request.args.getlist("groups") for p in v.split(",") if p.strip()]
    identity = Identity(sub=email, email=email, groups=tuple(groups))
    body: dict[str, Any] = {"type": "policy_explanation", "email": email.lower(), "groups": groups}
    body.update(_policy_part(who.cfg, email, groups))
    body["spend"] = spend_part(who.cfg, identity)
    return json_response(body)
