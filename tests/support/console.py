"""Helpers of the console tests: users, seeded traffic, sign-in in the browser, screenshots, session cookies."""

from __future__ import annotations

import json
import random
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common.db import pool as store
from gateway.standins import idp as idp_standin

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "console"
ADMIN = "boss@example.com"
VIEWER = "finance@example.com"
DEV = "dev@example.com"
MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5")


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Console:
    base: str
    idp: idp_standin.Idp
    config_path: Path


def seed_usage(days: int = 35, users: int = 12, per_day: int = 6, seed: int = 7) -> None:
    """A month of traffic written through the ledger's own settle statement (usage rows and counters agree)."""
    from common.spend import caps

    rng = random.Random(seed)
    db = store.get()
    now = datetime.now(UTC)
    emails = [DEV] + [f"user{i:02d}@example.com" for i in range(1, users)]
    for back in range(days, -1, -1):
        day_start = (now - timedelta(days=back)).replace(hour=0, minute=0, second=0, microsecond=0)
        for email in emails:
            for _ in range(rng.randrange(per_day)):
                at = day_start + timedelta(seconds=rng.randrange(86_400))
                if at > now:
                    at = now - timedelta(seconds=rng.randrange(1, 600))
                model = rng.choice(MODELS)
                cost = rng.randrange(2_000, 400_000)
                groups = ["eng"] if email != DEV else ["eng", "ml"]
                keys = sorted(
                    [(caps.user_key(email), 0), (caps.ORG_KEY, rng.randrange(16))]
                    + [(caps.group_key(g), 0) for g in groups]
                )
                db.execute(
                    "SELECT spend_settle(%s::uuid, %s, %s, %s::date, %s, %s, %s::text[], %s, %s, %s, %s, %s, %s,"
                    " %s, %s, %s, %s, %s, %s, %s::text[], %s::smallint[], %s)",
                    (
                        str(uuid.uuid4()), "req_seed", at, at.date(), email, email, groups, model,
                        "vertex", model + "@x", None, "messages", 529 if rng.random() < 0.03 else 200,
                        rng.randrange(100, 20_000), rng.randrange(50, 4_000), rng.randrange(0, 50_000), 0, 0,
                        cost, [k for k, _ in keys], [s for _, s in keys], False,
                    ),
                )  # fmt: skip


def sign_in(page: Any, console: Console, email: str, target: str = "/admin") -> None:
    """Open the console; it sends the browser to the IdP, which signs `email` in and sends it back."""
    console.idp.login_as(email)
    page.goto(console.base + target)
    page.wait_for_url(
        lambda url: "/admin/callback" not in url and "/admin/signin" not in url and url.startswith(console.base),
        timeout=20_000,
    )
    page.wait_for_selector("header.top", timeout=10_000)


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def session_of(config_path: Path, email: str, groups: list[str], idle_seconds: float = 0) -> str:
    """A console session cookie as the gateway seals it, last used `idle_seconds` ago."""
    from common import config
    from common.auth import crypto
    from common.console import web

    cfg = config.load(str(config_path)).config
    now = int(time.time())
    payload = {
        "e": email,
        "g": groups,
        "c": "nonce-" + uuid.uuid4().hex,
        "s": now - int(idle_seconds),
        "t": now - int(idle_seconds),
    }
    return crypto.seal(cfg, json.dumps(payload), web.SESSION_PURPOSE)
