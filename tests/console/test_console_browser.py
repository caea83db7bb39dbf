"""The console in a real headless Chromium, signed in through the real OIDC provider (oauth2-mock-server).

An admin sees a user's spend, sets a cap, revokes a session and reads the
audit rows; a read-only admin cannot write; CSRF and the CSP hold. The
screenshots referenced by docs/console.md are taken here.
"""

from __future__ import annotations

import re
from typing import Any

import requests
from support import signin
from support.console import ADMIN, DEV, VIEWER, Console, seed_usage, session_of, shot, sign_in

from common.core import periods
from common.db import pool as store
from common.spend import caps
from common.spend import store as spend_store


def _watch_csp(page: Any) -> list[str]:
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return violations


def _device_session(console: Console, email: str) -> dict[str, Any]:
    """A real Claude Code sign-in (device flow through the IdP) for `email`: an auth_sessions row and tokens."""
    console.idp.login_as(email)
    grant = signin.device_authorize(console.base)
    final = signin.approve(grant["verification_uri_complete"])
    assert final.status_code == 200, final.text
    tokens = signin.poll(console.base, grant["device_code"])
    assert tokens.status_code == 200, tokens.text
    body: dict[str, Any] = tokens.json()
    return body


def test_admin_sees_spend_sets_a_cap_revokes_a_session_and_reads_the_audit(console: Console, context: Any) -> None:
    seed_usage()
    tokens = _device_session(console, DEV)
    page = context.new_page()
    violations = _watch_csp(page)
    page.on("dialog", lambda dialog: dialog.accept())

    sign_in(page, console, ADMIN)
    assert page.url == console.base + "/admin"
    assert page.locator("header .who strong").inner_text() == "admin"
    month = page.locator("#org-monthly .big")
    org = spend_store.period_spend(store.get(), [caps.ORG_KEY], [periods.today().replace(day=1)], periods.today())
    assert int(month.get_attribute("data-micros")) == org[0][0] > 0
    assert page.locator("svg.chart rect").count() > 20
    shot(page, "overview")
    page.emulate_media(color_scheme="dark")
    shot(page, "overview-dark")
    page.emulate_media(color_scheme="light")

    # Users: search, open the user.
    page.goto(console.base + "/admin/users?q=dev")
    assert page.locator("tbody tr").count() == 1
    page.click(f"text={DEV}")
    page.wait_for_url(re.compile(r"/admin/users/dev%40example\.com$|/admin/users/dev@example\.com$"))
    assert "No cap applies" in page.locator("#caps").inner_text()
    assert page.locator("#requests tbody tr").count() == 25

    # Limits: an invalid cap shows the admin API's own message; a valid one is saved.
    page.goto(console.base + "/admin/limits")
    page.select_option("#scope_type", "user")
    page.fill("#scope_id", "not-an-email")
    page.select_option("#period", "daily")
    page.fill("#amount", "50")
    page.click("#new-limit button[type=submit]")
    assert (
        page.locator("#form-error").inner_text()
        == "scope.user_id: expected the user's email address, got 'not-an-email'"
    )
    page.fill("#scope_id", DEV)
    page.fill("#amount", "50")
    page.click("#new-limit button[type=submit]")
    page.wait_for_selector("p.notice")
    rows = store.get().execute("SELECT id, scope_id, period, amount_micros FROM spend_limits")
    assert [(r[1], r[2], int(r[3])) for r in rows] == [(DEV, "daily", 50_000_000)]
    limit_id = rows[0][0]
    assert page.locator(f"tr[data-limit='{limit_id}']").count() == 1
    shot(page, "limits")

    # The user's page shows the cap's standing; revoke the Claude Code session.
    page.goto(f"{console.base}/admin/users/{DEV}")
    cap_row = page.locator("tr[data-cap='user-daily']")
    today_spend = spend_store.period_spend(store.get(), [caps.user_key(DEV)], [periods.today()], periods.today())[0][0]
    assert cap_row.locator("td.num").first.get_attribute("data-micros") == str(today_spend)
    assert cap_row.locator(".pct").inner_text() == f"{100 * today_spend / 50_000_000:.1f} %"
    shot(page, "user")
    session_row = page.locator("#sessions tbody tr").first
    sid = session_row.get_attribute("data-session")
    session_row.locator("button.danger").click()
    page.wait_for_selector("p.notice")
    assert "Revoked 1 session" in page.locator("p.notice").inner_text()
    revoked = store.get().execute("SELECT revoked_by, revoke_reason FROM auth_sessions WHERE id = %s", (sid,))
    assert revoked == [[ADMIN, "admin"]] or revoked == [(ADMIN, "admin")]
    assert signin.refresh(console.base, tokens["refresh_token"]).status_code == 401

    # The audit log shows both writes with the console user as actor, the same rows the API writes.
    page.goto(console.base + "/admin/audit?action=spend_limit.")
    assert page.locator("#audit tbody tr").count() == 1
    assert page.locator("#audit tbody tr td").nth(1).inner_text() == ADMIN
    assert page.locator("#audit tbody tr td").nth(2).inner_text() == "spend_limit.create"
    page.goto(console.base + "/admin/audit?action=session.revoked")
    assert page.locator("#audit tbody tr td").nth(1).inner_text() == ADMIN
    page.goto(console.base + "/admin/audit")
    shot(page, "audit")
    audit = store.get().execute(
        "SELECT actor, action, target FROM audit_log WHERE action LIKE 'spend_limit.%' OR action = 'session.revoked' ORDER BY id"
    )
    assert [tuple(r) for r in audit] == [(ADMIN, "spend_limit.create", limit_id), (ADMIN, "session.revoked", DEV)]

    # CSP: no violation on any page, and an injected inline script does not run.
    assert violations == []
    ran = page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__injected = 1';"
        " document.body.appendChild(s); return window.__injected === 1; }"
    )
    assert ran is False and any("Content Security Policy" in v for v in violations)


def test_csrf_token_and_origin_are_required(console: Console, context: Any) -> None:
    page = context.new_page()
    sign_in(page, console, ADMIN, "/admin/limits")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    form = {"scope_type": "organization", "period": "monthly", "amount": "1000"}
    origin = {"Origin": console.base}
    # The browser's own cookies, but no token / a wrong token / another origin: refused, nothing written.
    for data, headers in (
        (form, origin),
        ({**form, "csrf_token": "forged"}, origin),
        ({**form, "csrf_token": token}, {"Origin": "https://evil.example"}),
    ):
        response = page.request.post(console.base + "/admin/limits", form=data, headers=headers, max_redirects=0)
        assert response.status == 403, response.text()
    assert store.get().execute("SELECT count(*) FROM spend_limits")[0][0] == 0
    reasons = store.get().execute(
        "SELECT detail->>'reason' FROM audit_log WHERE action = 'console.refused' ORDER BY id"
    )
    assert [r[0] for r in reasons] == ["csrf", "csrf", "cross_origin"]
    ok = page.request.post(
        console.base + "/admin/limits", form={**form, "csrf_token": token}, headers=origin, max_redirects=0
    )
    assert ok.status == 303
    assert store.get().execute("SELECT scope_type, amount_micros FROM spend_limits") in (
        [["organization", 1_000_000_000]],
        [("organization", 1_000_000_000)],
    )
    # Another site cannot even send the cookie: SameSite=Strict, HttpOnly, and the page's headers.
    cookie = next(c for c in context.cookies() if c["name"] == "gw_console")
    assert cookie["sameSite"] == "Strict" and cookie["httpOnly"] is True
    headers = page.request.get(console.base + "/admin").headers
    assert headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'; style-src 'self'")
    assert "'unsafe-inline'" not in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"


def test_read_only_admin_can_look_but_not_write(console: Console, context: Any) -> None:
    seed_usage(days=3, users=3)
    page = context.new_page()
    sign_in(page, console, VIEWER)
    assert page.locator("header .who strong").inner_text() == "read-only"
    page.goto(console.base + "/admin/limits")
    assert page.locator("#new-limit").count() == 0
    page.goto(f"{console.base}/admin/users/{DEV}")
    assert page.locator("#sessions button").count() == 0
    shot(page, "read-only")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    response = page.request.post(
        console.base + "/admin/limits",
        form={"csrf_token": token, "scope_type": "organization", "period": "daily", "amount": "5"},
        headers={"Origin": console.base},
        max_redirects=0,
    )
    assert response.status == 403 and "Read-only access" in response.text()
    assert store.get().execute("SELECT count(*) FROM spend_limits")[0][0] == 0
    refused = store.get().execute("SELECT actor, detail->>'reason' FROM audit_log WHERE action = 'console.refused'")
    assert [tuple(r) for r in refused] == [(VIEWER, "read_only")]


def test_outsider_is_refused_and_the_session_times_out(console: Console, context: Any) -> None:
    page = context.new_page()
    console.idp.login_as("nobody@example.com")
    page.goto(console.base + "/admin")
    page.wait_for_selector("h1")
    assert page.locator("h1").inner_text() == "Access not allowed"
    assert "neither admin.admin_groups nor admin.viewer_groups" in page.locator("main").inner_text()
    assert not [c for c in context.cookies() if c["name"] == "gw_console" and c["value"]]

    # An expired session cookie (last used 31 minutes ago, the timeout being 30) sends the browser to sign in.
    stale = session_of(console.config_path, ADMIN, ["claude-admins"], idle_seconds=31 * 60)
    response = requests.get(
        console.base + "/admin/users", cookies={"gw_console": stale}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 303 and response.headers["Location"] == "/admin/signin?next=/admin/users"
    fresh = session_of(console.config_path, ADMIN, ["claude-admins"], idle_seconds=29 * 60)
    assert (
        requests.get(
            console.base + "/admin/users", cookies={"gw_console": fresh}, allow_redirects=False, timeout=10
        ).status_code
        == 200
    )
