"""Bad input at every sign-in step gets the protocol's error shape, never a 500."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support import JWT_SECRET, signin
from test_auth_flow import Gateway, _gateway, _oauth_error, config, idp  # noqa: F401 (fixtures)

from common.db import pool as store

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def gw(tmp_path: Path, database_url: str, idp: Any, request: pytest.FixtureRequest) -> Iterator[Gateway]:  # noqa: F811
    yield from _gateway(tmp_path, database_url, idp, getattr(request.function, "gateway_config", {}))


# --- forms and grants -----------------------------------------------------------------------


def test_malformed_and_oversized_forms(gw: Gateway) -> None:
    for path in ("/oauth/device_authorization", "/oauth/token", "/oauth/revoke"):
        big = requests.post(f"{gw.base}{path}", data={"x": "a" * 20_000}, timeout=10)
        _oauth_error(big, 413, "invalid_request")
    as_json = requests.post(
        f"{gw.base}/oauth/token", json={"grant_type": "refresh_token", "refresh_token": "x"}, timeout=10
    )
    _oauth_error(as_json, 401, "invalid_grant")  # JSON is read like the form
    for body in (b"[1, 2]", b"{not json", b'"grant_type"'):
        wrong = requests.post(
            f"{gw.base}/oauth/token", data=body, headers={"Content-Type": "application/json"}, timeout=10
        )
        _oauth_error(wrong, 400, "invalid_request")
    xml = requests.post(f"{gw.base}/oauth/token", data=b"<a/>", headers={"Content-Type": "text/xml"}, timeout=10)
    _oauth_error(xml, 400, "invalid_request")
    not_utf8 = requests.post(
        f"{gw.base}/oauth/token",
        data=b"grant_type=\xff\xfe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    _oauth_error(not_utf8, 400, "invalid_request")
    _oauth_error(requests.post(f"{gw.base}/oauth/token", timeout=10), 400, "invalid_request")
    unknown = requests.post(f"{gw.base}/oauth/token", data={"grant_type": "password"}, timeout=10)
    _oauth_error(unknown, 400, "unsupported_grant_type")
    code_grant = requests.post(f"{gw.base}/oauth/token", data={"grant_type": "authorization_code"}, timeout=10)
    _oauth_error(code_grant, 400, "unsupported_grant_type")
    _oauth_error(
        requests.post(f"{gw.base}/oauth/token", data={"grant_type": DEVICE_GRANT}, timeout=10), 400, "invalid_request"
    )
    _oauth_error(signin.poll(gw.base, "nope"), 400, "invalid_grant")
    for path in ("/oauth/token", "/oauth/device_authorization", "/oauth/revoke"):
        _oauth_error(requests.get(f"{gw.base}{path}", timeout=10), 405, "invalid_request")
    # Device authorization ignores what it does not know, client_id and scope included.
    grant = signin.device_authorize(gw.base, client_id="whatever", scope="openid", foo="bar")
    assert grant["user_code"]


def test_replayed_device_code(gw: Gateway) -> None:
    grant = signin.device_authorize(gw.base)
    signin.approve(grant["verification_uri_complete"])
    assert signin.poll(gw.base, grant["device_code"]).status_code == 200
    time.sleep(1.0)
    _oauth_error(signin.poll(gw.base, grant["device_code"]), 400, "invalid_grant")


def test_expired_code(gw: Gateway) -> None:
    grant = signin.device_authorize(gw.base)
    store.get().execute("UPDATE device_codes SET expires_at = now() - interval '1 second'")
    _oauth_error(signin.poll(gw.base, grant["device_code"]), 400, "expired_token")
    browser = requests.Session()
    late = signin.submit_code(browser, gw.base, grant["user_code"])
    assert late.status_code == 400 and "expired" in late.text


def test_denied_code_then_approval_attempt(gw: Gateway) -> None:
    grant = signin.device_authorize(gw.base)
    browser = requests.Session()
    denied = signin.submit_code(browser, gw.base, grant["user_code"], "deny")
    assert denied.status_code == 200 and "denied" in denied.text
    _oauth_error(signin.poll(gw.base, grant["device_code"]), 400, "access_denied")
    again = signin.submit_code(browser, gw.base, grant["user_code"], "approve")
    assert again.status_code == 400
    time.sleep(1.0)
    _oauth_error(signin.poll(gw.base, grant["device_code"]), 400, "access_denied")
    assert gw.audit("device.denied")


def test_idp_error_marks_the_code_denied(gw: Gateway) -> None:
    grant = signin.device_authorize(gw.base)
    browser = requests.Session()
    confirm = signin.submit_code(browser, gw.base, grant["user_code"])
    state = parse_qs(urlsplit(confirm.headers["Location"]).query)["state"][0]
    failed = browser.get(f"{gw.base}/device/callback", params={"state": state, "error": "access_denied"}, timeout=10)
    assert failed.status_code == 400 and "did not sign you in" in failed.text
    _oauth_error(signin.poll(gw.base, grant["device_code"]), 400, "access_denied")


def test_failed_code_exchange_marks_the_code_denied(gw: Gateway) -> None:
    grant = signin.device_authorize(gw.base)
    browser = requests.Session()
    confirm = signin.submit_code(browser, gw.base, grant["user_code"])
    state = parse_qs(urlsplit(confirm.headers["Location"]).query)["state"][0]
    failed = browser.get(f"{gw.base}/device/callback", params={"state": state, "code": "forged"}, timeout=30)
    assert failed.status_code == 502
    _oauth_error(signin.poll(gw.base, grant["device_code"]), 400, "access_denied")


def test_callback_without_or_with_wrong_state(gw: Gateway) -> None:
    assert requests.get(f"{gw.base}/device/callback", params={"code": "x", "state": "y"}, timeout=10).status_code == 400
    grant = signin.device_authorize(gw.base)
    browser = requests.Session()
    signin.submit_code(browser, gw.base, grant["user_code"])
    wrong = browser.get(f"{gw.base}/device/callback", params={"state": "other", "code": "x"}, timeout=10)
    assert wrong.status_code == 400 and "stale" in wrong.text
    browser.cookies.set("gw_oidc", "tampered.value.here")
    assert browser.get(f"{gw.base}/device/callback", params={"state": "s"}, timeout=10).status_code == 400


@pytest.mark.parametrize("variant", ["lower-dashed", "upper-undashed", "lower-undashed-spaced"])
def test_user_code_case_and_dash_insensitive(gw: Gateway, variant: str) -> None:
    grant = signin.device_authorize(gw.base)
    code = grant["user_code"]
    typed = {
        "lower-dashed": code.lower(),
        "upper-undashed": code.replace("-", ""),
        "lower-undashed-spaced": " " + code.replace("-", " ").lower() + " ",
    }[variant]
    browser = requests.Session()
    confirm = signin.submit_code(browser, gw.base, typed)
    assert confirm.status_code == 303
    final = browser.get(confirm.headers["Location"], timeout=30)
    assert final.status_code == 200 and "signed in" in final.text
    assert signin.poll(gw.base, grant["device_code"]).status_code == 200


def test_wrong_codes_are_refused_on_the_page(gw: Gateway) -> None:
    signin.device_authorize(gw.base)
    browser = requests.Session()
    for typed in ("AAAA-AAAA", "BCDF-GHJ", "", "<script>x</script>", "Ω" * 30):
        page = signin.submit_code(browser, gw.base, typed)
        assert page.status_code == 400 and "not valid" in page.text and "<script>x" not in page.text
    prefilled = browser.get(f"{gw.base}/device", params={"user_code": '"><script>'}, timeout=10)
    assert prefilled.status_code == 200 and "<script>" not in prefilled.text


@config({"rate_limits": {"device_verify": {"max": 3, "window_seconds": 600}}})
def test_too_many_code_guesses(gw: Gateway) -> None:
    browser = requests.Session()
    statuses = [signin.submit_code(browser, gw.base, f"BCDF-GHJ{c}").status_code for c in "KLMNP"]
    assert statuses[:3] == [400, 400, 400] and statuses[3:] == [429, 429]
    refused = signin.submit_code(browser, gw.base, "BCDF-GHJQ")
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    # Only wrong entries count: a valid code from the same address (one NAT) still goes through (issue 14 #11).
    grant = signin.device_authorize(gw.base)
    assert signin.submit_code(browser, gw.base, grant["user_code"]).status_code == 303


@config({"rate_limits": {"device_authorization": {"max": 2, "window_seconds": 600}}})
def test_device_authorization_rate_limit(gw: Gateway) -> None:
    signin.device_authorize(gw.base)
    signin.device_authorize(gw.base)
    third = requests.post(f"{gw.base}/oauth/device_authorization", data={"surface": "claude_code"}, timeout=10)
    _oauth_error(third, 429, "slow_down")
    assert int(third.headers["Retry-After"]) > 0


def test_csrf_and_origin_checks(gw: Gateway) -> None:
    grant = signin.device_authorize(gw.base)
    browser = requests.Session()
    page = signin.open_page(browser, f"{gw.base}/device")
    token = signin.csrf_token(page.text)
    form = {"user_code": grant["user_code"], "csrf_token": token, "action": "approve"}
    origin = {"Origin": gw.base}
    no_token = browser.post(
        f"{gw.base}/device", data={**form, "csrf_token": ""}, headers=origin, allow_redirects=False, timeout=10
    )
    assert no_token.status_code == 403
    other_session = requests.post(f"{gw.base}/device", data=form, headers=origin, allow_redirects=False, timeout=10)
    assert other_session.status_code == 403  # the token without its cookie
    cross = browser.post(
        f"{gw.base}/device", data=form, headers={"Origin": "https://evil.example"}, allow_redirects=False, timeout=10
    )
    assert cross.status_code == 403
    bare = browser.post(f"{gw.base}/device", data=form, allow_redirects=False, timeout=10)
    assert bare.status_code == 403
    cross_site = browser.post(
        f"{gw.base}/device", data=form, headers={"Sec-Fetch-Site": "cross-site"}, allow_redirects=False, timeout=10
    )
    assert cross_site.status_code == 403
    fetch_only = browser.post(
        f"{gw.base}/device", data=form, headers={"Sec-Fetch-Site": "same-origin"}, allow_redirects=False, timeout=10
    )
    assert fetch_only.status_code == 303
    big = browser.post(f"{gw.base}/device", data={**form, "pad": "x" * 40_000}, headers=origin, timeout=10)
    assert big.status_code == 413
    assert gw.audit("device.refused")


# --- session JWTs ---------------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    from common import config as gwconfig

    cfg = gwconfig.current()
    now = int(time.time())
    claims = {
        "iss": cfg.public_url,
        "aud": cfg.session.audience,
        "sub": "dev-0001",
        "email": "dev@example.com",
        "groups": ["eng"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "j1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _hs256_by_hand(claims: dict[str, Any], key: bytes, kid: str) -> str:
    """The HS/RS confusion forgery: an HMAC keyed with a public key (PyJWT refuses to make one)."""
    import hashlib
    import hmac

    signing_input = _b64({"alg": "HS256", "typ": "JWT", "kid": kid}) + "." + _b64(claims)
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _forged_tokens() -> dict[str, str]:
    from common.auth import sessions

    kid = sessions.key_id(JWT_SECRET)
    good = pyjwt.encode(_claims(), JWT_SECRET, algorithm="HS256", headers={"kid": kid})
    head, _payload, signature = good.split(".")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "alg none": _b64({"alg": "none", "typ": "JWT", "kid": kid}) + "." + _b64(_claims()) + ".",
        "RS256 with our kid": pyjwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": kid}),
        "HS256 keyed with a public key": _hs256_by_hand(_claims(), public_pem, kid),
        "wrong kid": pyjwt.encode(_claims(), JWT_SECRET, algorithm="HS256", headers={"kid": "0123456789abcdef"}),
        "no kid": pyjwt.encode(_claims(), JWT_SECRET, algorithm="HS256"),
        "wrong iss": pyjwt.encode(
            _claims(iss="https://evil.example"), JWT_SECRET, algorithm="HS256", headers={"kid": kid}
        ),
        "wrong aud": pyjwt.encode(_claims(aud="someone-else"), JWT_SECRET, algorithm="HS256", headers={"kid": kid}),
        "expired": pyjwt.encode(
            _claims(iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200, exp=int(time.time()) - 3600),
            JWT_SECRET,
            algorithm="HS256",
            headers={"kid": kid},
        ),
        "not yet valid": pyjwt.encode(
            _claims(nbf=int(time.time()) + 3600, exp=int(time.time()) + 7200),
            JWT_SECRET,
            algorithm="HS256",
            headers={"kid": kid},
        ),
        "missing email": pyjwt.encode(_claims(email=None), JWT_SECRET, algorithm="HS256", headers={"kid": kid}),
        "tampered payload": f"{head}.{_b64(_claims(groups=['claude-admins']))}.{signature}",
        "signed by another secret": pyjwt.encode(
            _claims(), "another-secret-0123456789-abcdefghijklmnop", algorithm="HS256", headers={"kid": kid}
        ),
        "garbage": "not.a.jwt",
        "empty segments": "..",
    }


def test_forged_session_tokens_get_401(gw: Gateway) -> None:
    from flask import Flask, request

    from common import config as gwconfig
    from common.auth import sessions
    from common.core import errors

    app = Flask("t")
    forged = _forged_tokens()
    good = pyjwt.encode(_claims(), JWT_SECRET, algorithm="HS256", headers={"kid": sessions.key_id(JWT_SECRET)})
    with app.test_request_context("/v1/models", headers={"Authorization": f"Bearer {good}"}):
        assert sessions.authenticate(request, gwconfig.current()).email == "dev@example.com"
    for name, token in forged.items():
        with (
            app.test_request_context("/v1/models", headers={"Authorization": f"Bearer {token}"}),
            pytest.raises(errors.GatewayError) as caught,
        ):
            sessions.authenticate(request, gwconfig.current())
        assert caught.value.status == 401, name
        assert caught.value.error_type == "authentication_error", name
        assert caught.value.headers["x-should-retry"] == "false", name
        # None of them works on the sign-in endpoints either: revocation ignores them quietly.
        response = requests.post(f"{gw.base}/oauth/revoke", data={"token": token}, timeout=10)
        assert response.status_code == 200, name
        refreshed = signin.refresh(gw.base, token)
        _oauth_error(refreshed, 401, "invalid_grant")


# --- the IdP's ID token ---------------------------------------------------------------------


def test_id_token_nonce_and_signature_are_checked(gw: Gateway) -> None:
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import RSAKey

    from common import config as gwconfig
    from common.auth import crypto, oidc

    cfg = gwconfig.current()
    verifier = crypto.random_token(48)
    url = oidc.authorization_url(cfg, f"{gw.base}/device/callback", "state1", "nonce-sent", verifier)
    redirect = requests.get(url, allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(redirect.headers["Location"]).query)["code"][0]
    with pytest.raises(oidc.IdpError, match="does not verify"):
        oidc.exchange_code(cfg, code, verifier, f"{gw.base}/device/callback", "another-nonce")

    key = RSAKey.generate_key(2048, parameters={"kid": "attacker"})
    now = int(time.time())
    forged = jose_jwt.encode(
        {"alg": "RS256", "kid": "attacker"},
        {"iss": cfg.oidc.issuer, "aud": cfg.oidc.client_id, "sub": "x", "exp": now + 600, "iat": now, "nonce": "n"},
        key,
    )
    with pytest.raises(oidc.IdpError):
        oidc.verify_id_token(cfg, forged, nonce="n")
    hs = jose_jwt.encode(
        {"alg": "HS256"},
        {"iss": cfg.oidc.issuer, "aud": cfg.oidc.client_id, "sub": "x", "exp": now + 600, "iat": now},
        __import__("joserfc.jwk", fromlist=["OctKey"]).OctKey.import_key("s" * 32),
    )
    with pytest.raises(oidc.IdpError):
        oidc.verify_id_token(cfg, hs, nonce=None)


def test_cookies_are_secure_on_https(tmp_path: Path, database_url: str) -> None:
    from support import activate, base_config, write_config

    from gateway import local

    data = base_config(database_url, public_url="https://gw.example.com")
    data["local"] = {"enabled": False}
    activate(write_config(tmp_path, data))
    client = local.create_app().test_client()
    page = client.get("/device?user_code=bcdf-ghjk", base_url="https://gw.example.com")
    assert page.status_code == 200 and 'value="BCDF-GHJK"' in page.get_data(as_text=True)
    cookie = page.headers["Set-Cookie"]
    assert cookie.startswith("__Host-gw_csrf=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in cookie
    token = signin.csrf_token(page.get_data(as_text=True))
    plain_origin = client.post(
        "/device",
        data={"user_code": "BCDF-GHJK", "csrf_token": token, "action": "approve"},
        headers={"Origin": "http://gw.example.com"},
        base_url="https://gw.example.com",
    )
    assert plain_origin.status_code == 403
