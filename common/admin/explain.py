"""`GET /v1/organizations/policy/explain?email=&groups=`: a user's effective policy.

Which managed policy applies (first match, catch-all last), the models and
tools it allows, the settings Claude Code receives (`common.policy.explain`,
what `gateway explain` prints too), and every spend cap that applies with its
standing.
"""

from __future__ import annotations

from typing import Any

from flask import Request, Response

from common import policy
from common.admin import api
from common.config import Config
from common.core import periods
from common.core.identity import Identity
from common.db import pool as store
from common.http import json_response
from common.spend import caps, pricing


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
    body.update(policy.explain(who.cfg, email, groups))
    body["spend"] = spend_part(who.cfg, identity)
    return json_response(body)
