"""Fixtures of the console tests: the real OIDC provider (oauth2-mock-server), the one-origin gateway, and a real headless Chromium (Debian's `chromium`, driven by Playwright).

`make test` installs Chromium (`make browser`); without it these tests fail
under CI=true and are skipped, with the command to run, otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import base_config, deep_merge, free_port, live_gateway, write_config
from support.console import ADMIN, DEV, VIEWER, Console, chromium_path

from gateway.standins import idp as idp_standin


@pytest.fixture(scope="session")
def idp() -> Iterator[idp_standin.Idp]:
    handle = idp_standin.start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def console(tmp_path: Path, database_url: str, idp: idp_standin.Idp) -> Iterator[Console]:
    port = free_port()
    data = deep_merge(
        base_config(database_url, public_url=f"http://127.0.0.1:{port}", issuer=idp.issuer),
        {"admin": {"admin_groups": ["claude-admins"], "viewer_groups": ["finance"], "console_session_minutes": 30}},
    )
    extra: dict[str, Any] = {}
    path = write_config(tmp_path, deep_merge(data, extra))
    idp.set_user(ADMIN, sub="boss-1", groups=["claude-admins", "eng"], email_verified=True, disabled=False)
    idp.set_user(VIEWER, sub="fin-1", groups=["finance"], email_verified=True, disabled=False)
    idp.set_user(DEV, sub="dev-1", groups=["eng", "ml"], email_verified=True, disabled=False)
    idp.set_user("nobody@example.com", sub="nb-1", groups=["eng"], email_verified=True, disabled=False)
    from common.auth import revocation
    from common.spend import caps

    revocation.reset_cache()
    with live_gateway(path, port=port) as live:
        caps.invalidate()
        yield Console(live.url, idp, path)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        message = "Chromium is not installed: run `make browser` (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "playwright is not installed: run `make` (requirements-dev.txt pins it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as pw:
        handle = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield handle
        finally:
            handle.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1366, "height": 900}, color_scheme="light")
    try:
        yield ctx
    finally:
        ctx.close()
