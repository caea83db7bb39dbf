"""Spend limits in the benchmark: caps for every simulated user, and scenario 4.

Caps are set through each gateway's own admin API (`POST
/v1/organizations/spend_limits`, Anthropic's Admin API shape: `scope`
`{type: user, user_id}`, `amount` in US cents as a decimal string). Ours is
called in this process through the admin function's WSGI app (the same code
Cloud Run runs, without a socket); the peer's over HTTP. The simulated users'
caps are far above what the benchmark spends, so every request does the cap
check and the metering without ever being refused. One extra user, the
spender, has a cap of exactly `headroom` requests' worth for scenario 4.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench import peer, scenarios, standin, target

USER_CAP_CENTS = 100_000_00  # $100,000 a day: never reached, always checked
PATH = "/v1/organizations/spend_limits"


def cap_body(user_id: str, cents: int) -> dict[str, Any]:
    return {"scope": {"type": "user", "user_id": user_id}, "amount": str(cents), "period": "daily"}


def prepare_gateway(
    config_path: Path, users: list[dict[str, Any]], spender: dict[str, Any], spender_cap_cents: int
) -> dict[str, Any]:
    """Migrate, set every cap through the admin API, mint one session token per user."""
    import os

    os.environ["GATEWAY_CONFIG"] = str(config_path)
    os.environ["LOG_LEVEL"] = "WARNING"  # the admin API's audit lines are not the benchmark's output
    from common import config
    from common.auth import sessions
    from common.db import migrations
    from common.db import pool as store
    from gateway import local

    config.use(str(config_path))
    store.reset()
    cfg = config.current()
    migrations.migrate(store.get())
    admin = local.load_function("admin").app
    enforcement = "on"
    problems: list[str] = []
    for user in users:
        status, text = _admin_post(admin, cap_body(user["email"], USER_CAP_CENTS))
        if status >= 300:
            problems.append(f"{status} {text[:200]}")
            break
    status, text = _admin_post(admin, cap_body(spender["email"], spender_cap_cents))
    if status >= 300:
        problems.append(f"{status} {text[:200]}")
    if problems:
        enforcement = "caps could not be set: " + "; ".join(problems)
    tokens = [sessions.issue(cfg, sub=u["sub"], email=u["email"], groups=u["groups"])[0] for u in users]
    spender_token = sessions.issue(cfg, sub=spender["sub"], email=spender["email"], groups=spender["groups"])[0]
    return {
        "tokens": tokens,
        "spender_token": spender_token,
        "spender_email": spender["email"],
        "enforcement": enforcement,
        "cap_cents": spender_cap_cents,
    }


def _admin_post(admin_app: Any, payload: dict[str, Any]) -> tuple[int, str]:
    """POST to the admin function's App in-process, as functions-framework would hand it a request."""
    import flask

    flask_app = flask.Flask("bench-admin")
    with flask_app.test_request_context(
        PATH,
        method="POST",
        data=json.dumps(payload),
        headers={"content-type": "application/json", "x-api-key": target.ADMIN_KEY},
    ):
        response = admin_app(flask.request)
        return response.status_code, response.get_data(as_text=True)


def prepare_peer(base_url: str, users: list[dict[str, Any]], spender: dict[str, Any], spender_cap_cents: int) -> str:
    """Caps on the peer through its admin API (user_id = the token's sub)."""
    problems = []
    for user in [*users, spender]:
        cents = spender_cap_cents if user is spender else USER_CAP_CENTS
        status, text = http_post(base_url + PATH, cap_body(user["sub"], cents), {"x-api-key": peer.ADMIN_KEY})
        if status >= 300:
            problems.append(f"{status} {text[:200]}")
            break
    return "on" if not problems else "caps could not be set: " + "; ".join(problems)


def http_post(url: str, payload: dict[str, Any], headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 (loopback URLs built here)
        url, data=json.dumps(payload).encode(), headers={"content-type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def ledger_totals(email: str) -> dict[str, int]:
    """What our ledger recorded for `email` (tokens and cost), read from Postgres."""
    import dataclasses

    from common.db import pool
    from common.spend import store

    return dataclasses.asdict(store.usage_totals(pool.get(), email))


def usage_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """after - before for every number in the stand-in's stats (nested mappings too)."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[key] = value - (before.get(key) or 0)
        elif isinstance(value, dict):
            out[key] = usage_delta(before.get(key) or {}, value)
    return out


def scenario(
    targets: list[scenarios.Target],
    upstream_url: str,
    prepared: dict[str, Any],
    peer_info: dict[str, Any],
    *,
    payload: dict[str, Any],
    concurrency: int,
    cents_per_request: int,
    headroom_requests: int,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> dict[str, Any]:
    """50 requests at once from one user with `headroom_requests` of budget left
    (`headers`, `query`: sent with each request, as `scenarios.load` takes them)."""
    out: dict[str, Any] = {
        "concurrency": concurrency,
        "headroom_requests": headroom_requests,
        "cents_per_request": cents_per_request,
        "cap_cents": headroom_requests * cents_per_request,
    }
    for t in targets:
        if t.name == "direct":
            continue
        token = prepared["spender_token"] if t.name == "gateway" else peer_info.get("spender_token")
        if not token:
            continue
        before = standin.stats(upstream_url)
        raw = scenarios.load(
            t,
            requests=concurrency,
            concurrency=concurrency,
            payload=payload,
            tokens=[token],
            headers=headers,
            query=query,
        )
        after = standin.stats(upstream_url)
        allowed = raw["statuses"].get("200", 0)
        # is the cap enforced at all once the burst has settled? (tells "no cap" from "cap overshot")
        time.sleep(1.0)
        probe = scenarios.load(
            t, requests=1, concurrency=1, payload=payload, tokens=[token], headers=headers, query=query
        )
        after_probe = standin.stats(upstream_url)
        figures: dict[str, Any] = {
            "statuses": raw["statuses"],
            "errors": raw["errors"],
            "allowed": allowed,
            "overshoot_requests": allowed - headroom_requests,
            "overshoot_cents": allowed * cents_per_request - headroom_requests * cents_per_request,
            "standin_usage": usage_delta(before, after),
            "status_after_burst": next(iter(probe["statuses"]), None),
            "standin_usage_with_probe": usage_delta(before, after_probe),
        }
        if t.name == "gateway":
            try:
                figures["ledger"] = ledger_totals(prepared["spender_email"])
            except Exception as exc:  # the ledger's schema is the spend module's; say what failed
                figures["ledger"] = {"error": str(exc)[:300]}
            figures["ledger_exact"] = ledger_matches(figures["ledger"], usage_delta(before, after_probe))
        out[t.name] = figures
    return out


def ledger_matches(ledger: dict[str, Any], standin_usage: dict[str, Any]) -> bool:
    """Whether the ledger's token totals equal the stand-in's own count of what it served."""
    if "error" in ledger:
        return False
    served = standin_usage.get("usage", standin_usage)
    return bool(
        ledger.get("input_tokens") == served.get("input_tokens")
        and ledger.get("output_tokens") == served.get("output_tokens")
    )
