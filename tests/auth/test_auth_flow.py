"""Sign-in over HTTP: the gateway's auth function against a real OIDC provider (npm oauth2-mock-server).

Discovery -> device authorization -> the browser steps (code entry with CSRF and
Origin, IdP redirect, callback) -> token poll -> refresh with rotation -> the user
removed at the IdP -> refresh refused with 401 invalid_grant; and the ways each
step must refuse bad input in the protocol's error shape.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from support import ADMIN_READ_KEY, ADMIN_WRITE_KEY, base_config, deep_merge, live_gateway, signin, write_config

from common.db import pool as store
from gateway.standins import idp as idp_standin

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ALPHABET_ORDER = "BCDFGHJKLMNPQRSTVWXZ"
ALPHABET = set(ALPHABET_ORDER)


@pytest.fixture(scope="module")
def idp() -> Iterator[idp_standin.Idp]:
    handle = idp_standin.start()
    try:
        yield handle
    finally:
        handle.stop()


class Gateway:
    def __init__(self, base: str, idp: idp_standin.Idp, config_path: Path) -> None:
        self.base = base
        self.idp = idp
        self.config_path = config_path

    def sign_in(self, email: str = "dev@example.com") -> dict[str, Any]:
        self.idp.login_as(email)
        grant = signin.device_authorize(self.base)
        final = signin.approve(grant["verification_uri_complete"])
        assert final.status_code == 200 and "signed in" in final.text, final.text
        response = signin.poll(self.base, grant["device_code"])
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    def audit(self, action: str) -> list[tuple[Any, ...]]:
        return store.get().execute(
            "SELECT actor, target, client_ip, user_agent, detail::text FROM audit_log WHERE action = %s ORDER BY id",
            (action,),
        )


def _gateway(tmp_path: Path, database_url: str, idp: idp_standin.Idp, extra: dict[str, Any]) -> Iterator[Gateway]:
    from support import free_port

    port = free_port()
    data = base_config(database_url, public_url=f"http://127.0.0.1:{port}", issuer=idp.issuer)
    data = deep_merge(
        data,
        {
            "device": {"interval_seconds": 1, "code_ttl_seconds": 600},
            "session": {"revocation_cache_seconds": 0.2},
            "login_notice": "Be nice.",
        },
    )
    data = deep_merge(data, extra)
    path = write_config(tmp_path, data)
    idp.set_user("dev@example.com", sub="dev-0001", groups=["eng"], email_verified=True, disabled=False)
    idp.login_as("dev@example.com")
    from common.auth import revocation

    revocation.reset_cache()
    with live_gateway(path, port=port) as live:
        yield Gateway(live.url, idp, path)


@pytest.fixture
def gw(tmp_path: Path, database_url: str, idp: idp_standin.Idp, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """The gateway; a test's `GATEWAY_CONFIG` (module-level name in the test's own scope) overrides config."""
    extra = getattr(request.function, "gateway_config", {})
    yield from _gateway(tmp_path, database_url, idp, extra)


def config(extra: dict[str, Any]) -> Any:
    """Decorator: extra gateway.yaml for one test."""

    def mark(fn: Any) -> Any:
        fn.gateway_config = extra
        return fn

    return mark


def _oauth_error(response: requests.Response, status: int | tuple[int, ...], error: str) -> dict[str, Any]:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers.get("Cache-Control") == "no-store"
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert isinstance(body.get("error_description"), str)
    return body


# --- the whole flow -------------------------------------------------------------------------


def test_full_flow_discovery_to_offboarding(gw: Gateway) -> None:
    base = gw.base
    meta = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()
    assert meta["issuer"] == base
    assert meta["device_authorization_endpoint"] == f"{base}/oauth/device_authorization"
    assert meta["token_endpoint"] == f"{base}/oauth/token"
    assert meta["revocation_endpoint"] == f"{base}/oauth/revoke"
    assert set(meta["grant_types_supported"]) == {DEVICE_GRANT, "refresh_token"}
    assert "authorization_endpoint" not in meta

    grant = signin.device_authorize(base, unknown_param="ignored")
    assert len(grant["device_code"]) >= 43  # 32 random bytes, base64url
    code = grant["user_code"]
    assert len(code) == 9 and code[4] == "-" and set(code.replace("-", "")) <= ALPHABET
    assert grant["verification_uri"] == f"{base}/device"
    assert grant["verification_uri_complete"] == f"{base}/device?user_code={code}"
    assert grant["expires_in"] == 600 and grant["interval"] == 1
    assert grant["login_notice"] == "Be nice."

    _oauth_error(signin.poll(base, grant["device_code"]), 400, "authorization_pending")
    _oauth_error(signin.poll(base, grant["device_code"]), (400, 429), "slow_down")

    browser = requests.Session()
    page = signin.open_page(browser, grant["verification_uri_complete"])
    assert f'value="{code}"' in page.text
    assert "<script" not in page.text and "style=" not in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
    assert 'value="approve"' in page.text and 'value="deny"' in page.text
    # Opening the page approves nothing.
    time.sleep(1.0)
    _oauth_error(signin.poll(base, grant["device_code"]), 400, "authorization_pending")

    confirm = signin.submit_code(browser, base, code, "approve", signin.csrf_token(page.text))
    assert confirm.status_code == 303
    authorize = urlsplit(confirm.headers["Location"])
    assert f"{authorize.scheme}://{authorize.netloc}" == gw.idp.issuer
    query = parse_qs(authorize.query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["state"][0] and query["nonce"][0]
    assert query["redirect_uri"] == [f"{base}/device/callback"]
    final = browser.get(confirm.headers["Location"], timeout=30)
    assert final.status_code == 200 and "signed in" in final.text and "dev@example.com" in final.text

    time.sleep(1.0)
    response = signin.poll(base, grant["device_code"])
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer" and tokens["email"] == "dev@example.com"
    assert tokens["expires_in"] == 3600 and len(tokens["refresh_token"]) >= 43

    from common import config
    from common.auth import sessions

    identity = sessions.verify(config.current(), tokens["access_token"])
    assert identity.email == "dev@example.com" and identity.groups == ("eng",)
    assert identity.sub == "dev-0001" and identity.session_id

    # Refresh: re-checked at the IdP, groups re-read, tokens rotated.
    gw.idp.set_user("dev@example.com", groups=["eng", "ml"])
    refreshed = signin.refresh(base, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert fresh["access_token"] != tokens["access_token"]
    again = sessions.verify(config.current(), fresh["access_token"])
    assert again.groups == ("eng", "ml") and again.session_id == identity.session_id

    # Off-boarding: removed at the IdP, the next refresh is refused.
    assert gw.idp.remove_user("dev@example.com")
    _oauth_error(signin.refresh(base, fresh["refresh_token"]), 401, "invalid_grant")

    # Audit trail, without any token in it.
    for action in ("device.authorization", "device.confirmed", "device.approved", "token.issued", "token.refreshed"):
        rows = gw.audit(action)
        assert rows, action
        assert rows[-1][2] == "127.0.0.1" and rows[-1][3]
    refusals = gw.audit("token.refused")
    assert refusals and "idp_refused" in refusals[-1][4]
    everything = str(store.get().execute("SELECT * FROM audit_log"))
    for secret in (grant["device_code"], tokens["refresh_token"], tokens["access_token"], fresh["refresh_token"]):
        assert secret not in everything
    stored = str(store.get().execute("SELECT * FROM device_codes")) + str(
        store.get().execute("SELECT * FROM refresh_tokens")
    )
    assert grant["device_code"] not in stored and tokens["refresh_token"] not in stored


def test_disabled_user_and_lost_group_cannot_refresh(gw: Gateway) -> None:
    tokens = gw.sign_in()
    gw.idp.disable_user("dev@example.com")
    _oauth_error(signin.refresh(gw.base, tokens["refresh_token"]), 401, "invalid_grant")


@config({"oidc": {"allowed_groups": ["eng"]}})
def test_out_of_allowed_groups_refused_on_refresh(gw: Gateway) -> None:
    tokens = gw.sign_in()
    gw.idp.set_user("dev@example.com", groups=["sales"])
    _oauth_error(signin.refresh(gw.base, tokens["refresh_token"]), 401, "invalid_grant")


@config({"oidc": {"allowed_groups": ["eng"]}})
def test_gates_refuse_at_sign_in_with_a_clear_page(gw: Gateway) -> None:
    gw.idp.set_user("out@example.com", groups=["sales"])
    gw.idp.login_as("out@example.com")
    grant = signin.device_authorize(gw.base)
    final = signin.approve(grant["verification_uri_complete"])
    assert final.status_code == 403 and "not in a group allowed" in final.text
    time.sleep(1.0)
    _oauth_error(signin.poll(gw.base, grant["device_code"]), 400, "access_denied")


def test_unverified_email_refused(gw: Gateway) -> None:
    gw.idp.set_user("unverified@example.com", email_verified=False)
    gw.idp.login_as("unverified@example.com")
    grant = signin.device_authorize(gw.base)
    final = signin.approve(grant["verification_uri_complete"])
    assert final.status_code == 403 and "not verified" in final.text


@config({"oidc": {"allowed_email_domains": ["acme.com"]}})
def test_email_domain_gate(gw: Gateway) -> None:
    grant = signin.device_authorize(gw.base)
    final = signin.approve(grant["verification_uri_complete"])
    assert final.status_code == 403 and "example.com" in final.text


# --- refresh tokens and revocation ------------------------------------------------------------


@config({"session": {"refresh_grace_seconds": 0}})
def test_refresh_token_reuse_revokes_the_family(gw: Gateway) -> None:
    tokens = gw.sign_in()
    first = signin.refresh(gw.base, tokens["refresh_token"])
    assert first.status_code == 200
    newer = first.json()
    # The rotated-away token comes back: it leaked. The whole family dies.
    _oauth_error(signin.refresh(gw.base, tokens["refresh_token"]), 401, "invalid_grant")
    _oauth_error(signin.refresh(gw.base, newer["refresh_token"]), 401, "invalid_grant")
    rows = store.get().execute("SELECT revoke_reason FROM auth_sessions")
    assert rows == [("refresh_token_reuse",)]
    _assert_bearer_refused(gw, newer["access_token"])


def test_unknown_and_missing_refresh_tokens(gw: Gateway) -> None:
    _oauth_error(signin.refresh(gw.base, "not-a-token"), 401, "invalid_grant")
    response = requests.post(f"{gw.base}/oauth/token", data={"grant_type": "refresh_token"}, timeout=10)
    _oauth_error(response, 400, "invalid_request")


def _assert_bearer_refused(gw: Gateway, access_token: str) -> None:
    from flask import Flask

    from common import config
    from common.auth import sessions
    from common.core import errors

    time.sleep(0.3)  # revocation_cache_seconds in this config: 0.2
    app = Flask("t")
    with app.test_request_context("/v1/models", headers={"Authorization": f"Bearer {access_token}"}):
        from flask import request

        with pytest.raises(errors.GatewayError) as caught:
            sessions.authenticate(request, config.current())
    assert caught.value.status == 401 and caught.value.headers["x-should-retry"] == "false"
    assert "revoked" in caught.value.message


def test_revoke_endpoint_access_and_refresh_tokens(gw: Gateway) -> None:
    tokens = gw.sign_in()
    response = requests.post(
        f"{gw.base}/oauth/revoke", data={"token": tokens["access_token"], "token_type_hint": "access_token"}, timeout=10
    )
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    _assert_bearer_refused(gw, tokens["access_token"])
    _oauth_error(signin.refresh(gw.base, tokens["refresh_token"]), 401, "invalid_grant")

    other = gw.sign_in()
    response = requests.post(
        f"{gw.base}/oauth/revoke",
        data={"token": other["refresh_token"], "token_type_hint": "refresh_token"},
        timeout=10,
    )
    assert response.status_code == 200
    _oauth_error(signin.refresh(gw.base, other["refresh_token"]), 401, "invalid_grant")
    _assert_bearer_refused(gw, other["access_token"])
    for junk in ("", "garbage", "a.b.c"):
        assert requests.post(f"{gw.base}/oauth/revoke", data={"token": junk}, timeout=10).status_code == 200
    assert gw.audit("session.revoked")


def test_revocation_reaches_other_instances_within_the_cache_bound(gw: Gateway) -> None:
    from flask import Flask, request

    from common import config
    from common.auth import sessions
    from common.core import errors

    tokens = gw.sign_in()
    app = Flask("t")

    def authenticate() -> None:
        with app.test_request_context("/v1/models", headers={"Authorization": f"Bearer {tokens['access_token']}"}):
            sessions.authenticate(request, config.current())

    authenticate()  # loads the instance's revoked set
    # Another instance revokes: only the database knows.
    store.get().execute("UPDATE auth_sessions SET revoked_at = now(), revoke_reason = 'elsewhere'")
    time.sleep(0.35)
    with pytest.raises(errors.GatewayError) as caught:
        authenticate()
    assert caught.value.status == 401


# --- the admin API ---------------------------------------------------------------------------


def test_admin_lists_and_revokes_sessions(gw: Gateway) -> None:
    first = gw.sign_in()
    gw.sign_in()
    gw.idp.set_user("other@example.com", groups=["eng"])
    gw.sign_in("other@example.com")
    url = f"{gw.base}/v1/organizations/sessions"
    page = requests.get(url, params={"limit": 2}, headers={"x-api-key": ADMIN_READ_KEY}, timeout=10).json()
    assert len(page["data"]) == 2 and page["has_more"] is True and page["next_page"]
    rest = requests.get(
        url, params={"limit": 2, "page": page["next_page"]}, headers={"x-api-key": ADMIN_READ_KEY}, timeout=10
    ).json()
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    ids = {s["id"] for s in page["data"] + rest["data"]}
    assert len(ids) == 3
    mine = requests.get(url, params={"email": "DEV@example.com"}, headers={"x-api-key": ADMIN_READ_KEY}, timeout=10)
    assert {s["email"] for s in mine.json()["data"]} == {"dev@example.com"} and len(mine.json()["data"]) == 2

    refused = requests.post(
        f"{url}/revoke", json={"email": "dev@example.com"}, headers={"x-api-key": ADMIN_READ_KEY}, timeout=10
    )
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    done = requests.post(
        f"{url}/revoke", json={"email": "dev@example.com"}, headers={"x-api-key": ADMIN_WRITE_KEY}, timeout=10
    )
    assert done.status_code == 200 and done.json()["revoked"] == 2
    _oauth_error(signin.refresh(gw.base, first["refresh_token"]), 401, "invalid_grant")
    active = requests.get(url, headers={"x-api-key": ADMIN_READ_KEY}, timeout=10).json()["data"]
    assert [s["email"] for s in active] == ["other@example.com"]
    gone = requests.delete(f"{url}/{active[0]['id']}", headers={"x-api-key": ADMIN_WRITE_KEY}, timeout=10)
    assert gone.json()["revoked"] == 1
    everything = requests.get(
        url, params={"include_revoked": "true"}, headers={"x-api-key": ADMIN_READ_KEY}, timeout=10
    )
    assert len(everything.json()["data"]) == 3 and all(s["revoked_at"] for s in everything.json()["data"])
    bad = requests.post(f"{url}/revoke", json={}, headers={"x-api-key": ADMIN_WRITE_KEY}, timeout=10)
    assert bad.status_code == 400 and bad.json()["type"] == "error"
    assert requests.get(url, timeout=10).status_code == 401


# --- sessions that survive IdP blips and concurrent refresh (issue 14, findings 9-11) ------------


def _bearer_accepted(access_token: str) -> bool:
    from flask import Flask, request

    from common import config
    from common.auth import sessions
    from common.core import errors

    time.sleep(0.3)  # past revocation_cache_seconds: a revocation would show by now
    with Flask("t").test_request_context("/v1/models", headers={"Authorization": f"Bearer {access_token}"}):
        try:
            sessions.authenticate(request, config.current())
        except errors.GatewayError:
            return False
    return True


def _revoked() -> list[tuple[Any, ...]]:
    return store.get().execute("SELECT id, revoke_reason FROM auth_sessions WHERE revoked_at IS NOT NULL")


def test_idp_answering_500_defers_the_refresh_and_keeps_the_session(gw: Gateway) -> None:
    tokens = gw.sign_in()
    gw.idp.fail(500)
    try:
        response = signin.refresh(gw.base, tokens["refresh_token"])
        body = _oauth_error(response, 503, "temporarily_unavailable")
        assert "retry" in body["error_description"] and int(response.headers["Retry-After"]) > 0
        assert _revoked() == []
        assert _bearer_accepted(tokens["access_token"])  # the still-valid access token keeps working
        # The client's retry, still during the outage: the same token is neither burnt nor "reused".
        _oauth_error(signin.refresh(gw.base, tokens["refresh_token"]), 503, "temporarily_unavailable")
    finally:
        gw.idp.fail(0)
    healed = signin.refresh(gw.base, tokens["refresh_token"])
    assert healed.status_code == 200, healed.text
    assert _bearer_accepted(healed.json()["access_token"]) and _revoked() == []
    assert [row[4] for row in gw.audit("token.unavailable")] and "idp_unavailable" in gw.audit("token.unavailable")[0][
        4
    ]
    assert tokens["refresh_token"] not in str(store.get().execute("SELECT * FROM audit_log"))


def test_idp_stopped_defers_the_refresh_and_keeps_the_session(tmp_path: Path, database_url: str) -> None:
    own = idp_standin.start()
    gateway = _gateway(tmp_path, database_url, own, {})
    try:
        gw = next(gateway)
        tokens = gw.sign_in()
        own.stop()  # connection refused from now on
        response = signin.refresh(gw.base, tokens["refresh_token"])
        _oauth_error(response, 503, "temporarily_unavailable")
        assert _revoked() == []
        assert _bearer_accepted(tokens["access_token"])
        unused = store.get().execute("SELECT count(*) FROM refresh_tokens WHERE used_at IS NULL AND claim IS NULL")
        assert unused == [(1,)]  # the presented token is still the family's live one
    finally:
        gateway.close()
        own.stop()


def test_idp_refusal_still_revokes(gw: Gateway) -> None:
    tokens = gw.sign_in()
    gw.idp.disable_user("dev@example.com")
    _oauth_error(signin.refresh(gw.base, tokens["refresh_token"]), 401, "invalid_grant")
    assert [r[1] for r in _revoked()] == ["idp_refused"]
    assert not _bearer_accepted(tokens["access_token"])


def test_concurrent_refreshes_with_one_token_get_the_same_successor(gw: Gateway) -> None:
    import threading

    tokens = gw.sign_in()
    barrier = threading.Barrier(4)
    answers: list[requests.Response] = []

    def refresh() -> None:
        barrier.wait()
        answers.append(signin.refresh(gw.base, tokens["refresh_token"]))

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    bodies = [a.json() for a in answers]
    assert len({b["refresh_token"] for b in bodies}) == 1 and len({b["access_token"] for b in bodies}) == 1
    assert bodies[0]["refresh_token"] != tokens["refresh_token"]
    assert all(0 < b["expires_in"] <= 3600 for b in bodies)
    assert _revoked() == []
    assert store.get().execute("SELECT count(*) FROM refresh_tokens") == [(2,)]  # one rotation, not four
    following = signin.refresh(gw.base, bodies[0]["refresh_token"])
    assert following.status_code == 200, following.text
    assert _bearer_accepted(following.json()["access_token"])


@config({"session": {"refresh_grace_seconds": 1}})
def test_repeat_in_the_grace_window_is_idempotent_and_reuse_after_it_revokes(gw: Gateway) -> None:
    tokens = gw.sign_in()
    first = signin.refresh(gw.base, tokens["refresh_token"])
    assert first.status_code == 200
    repeat = signin.refresh(gw.base, tokens["refresh_token"])  # a retry after a lost response
    assert repeat.status_code == 200 and repeat.json()["refresh_token"] == first.json()["refresh_token"]
    assert repeat.json()["access_token"] == first.json()["access_token"]
    time.sleep(1.3)
    _oauth_error(signin.refresh(gw.base, tokens["refresh_token"]), 401, "invalid_grant")
    assert [r[1] for r in _revoked()] == ["refresh_token_reuse"]
    _oauth_error(signin.refresh(gw.base, first.json()["refresh_token"]), 401, "invalid_grant")
    assert not _bearer_accepted(first.json()["access_token"])
    # The sealed successor is not kept past the window once the family moves on (here: revoked, never served).
    assert store.get().execute("SELECT count(*) FROM refresh_tokens WHERE successor_sealed IS NOT NULL") == [(1,)]


def test_sealed_successors_are_cleared_once_their_window_has_passed(gw: Gateway) -> None:
    tokens = gw.sign_in()
    first = signin.refresh(gw.base, tokens["refresh_token"]).json()
    store.get().execute("UPDATE refresh_tokens SET used_at = used_at - interval '2 minutes' WHERE used_at IS NOT NULL")
    second = signin.refresh(gw.base, first["refresh_token"])
    assert second.status_code == 200
    rows = store.get().execute("SELECT count(*) FROM refresh_tokens WHERE successor_sealed IS NOT NULL")
    assert rows == [(1,)]  # only the newest rotation's, still in its window
    stored = str(store.get().execute("SELECT * FROM refresh_tokens"))
    assert second.json()["refresh_token"] not in stored and second.json()["access_token"] not in stored


def _wrong_entries(gw: Gateway, browser: requests.Session, count: int, headers: dict[str, str]) -> list[int]:
    page = browser.get(f"{gw.base}/device", headers=headers, timeout=10)
    csrf = signin.csrf_token(page.text)
    statuses = []
    for n in range(count):
        response = browser.post(
            f"{gw.base}/device",
            data={
                "user_code": "BBBB" + ALPHABET_ORDER[n // 20 % 20] + ALPHABET_ORDER[n % 20] + "BB",
                "csrf_token": csrf,
                "action": "approve",
            },
            headers={"Origin": gw.base, "Sec-Fetch-Site": "same-origin", **headers},
            allow_redirects=False,
            timeout=10,
        )
        statuses.append(response.status_code)
    return statuses


@config({"rate_limits": {"device_verify": {"max": 10, "window_seconds": 600}}})
def test_wrong_entries_behind_one_address_never_lock_out_a_valid_code(gw: Gateway) -> None:
    grant = signin.device_authorize(gw.base)
    statuses = _wrong_entries(gw, requests.Session(), 100, {})
    assert statuses[:10] == [400] * 10 and set(statuses[10:]) == {429}  # guessing is still throttled
    final = signin.approve(grant["verification_uri_complete"])  # a colleague behind the same NAT
    assert final.status_code == 200 and "signed in" in final.text
    time.sleep(1.0)
    assert signin.poll(gw.base, grant["device_code"]).status_code == 200


@config(
    {
        "listen": {"trusted_proxies": ["127.0.0.1/32"]},
        "rate_limits": {"device_verify": {"max": 10, "window_seconds": 600}},
    }
)
def test_an_address_past_its_limit_cannot_complete_codes_issued_elsewhere(gw: Gateway) -> None:
    response = requests.post(
        f"{gw.base}/oauth/device_authorization",
        data={"surface": "claude_code"},
        headers={"X-Forwarded-For": "203.0.113.5"},
        timeout=10,
    )
    code = response.json()["user_code"]
    guesser = {"X-Forwarded-For": "198.51.100.7"}
    browser = requests.Session()
    assert _wrong_entries(gw, browser, 11, guesser)[-1] == 429
    page = browser.get(f"{gw.base}/device", headers=guesser, timeout=10)
    hit = browser.post(
        f"{gw.base}/device",
        data={"user_code": code, "csrf_token": signin.csrf_token(page.text), "action": "deny"},
        headers={"Origin": gw.base, "Sec-Fetch-Site": "same-origin", **guesser},
        allow_redirects=False,
        timeout=10,
    )
    assert hit.status_code == 429  # a right guess from a throttled address learns nothing
    other = requests.Session()
    page = other.get(f"{gw.base}/device", headers={"X-Forwarded-For": "192.0.2.9"}, timeout=10)
    confirm = signin.submit_code(other, gw.base, code, "approve", signin.csrf_token(page.text))
    # submit_code sends no X-Forwarded-For: the peer 127.0.0.1 is trusted and is the client, not throttled
    assert confirm.status_code == 303
