"""Sign-in rules without a server: user codes, sealing, claims and groups, the Directory API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from support import base_config, deep_merge

from common import config
from common.auth import claims as identity
from common.auth import crypto
from common.config import Config


def _cfg(**extra: Any) -> Config:
    data = deep_merge(base_config("postgresql://u@127.0.0.1:1/x"), extra)
    return config.parse(yaml.safe_dump(data)).config


# --- user codes and token material -----------------------------------------------------------


def test_user_codes_use_the_base20_alphabet() -> None:
    codes = {crypto.new_user_code() for _ in range(500)}
    assert len(codes) > 490
    for code in codes:
        assert len(code) == 8 and set(code) <= set("BCDFGHJKLMNPQRSTVWXZ")
        assert crypto.normalize_user_code(crypto.display_user_code(code).lower()) == code


@given(st.text(max_size=30))
def test_normalize_accepts_only_codes(text: str) -> None:
    normalized = crypto.normalize_user_code(text)
    if normalized is not None:
        assert len(normalized) == 8 and set(normalized) <= set(crypto.USER_CODE_ALPHABET)


def test_random_tokens_carry_256_bits() -> None:
    token = crypto.random_token(32)
    assert len(token) >= 43 and crypto.digest(token) != token and len(crypto.digest(token)) == 64


def test_seal_rotates_with_the_session_keys() -> None:
    old = _cfg(session={"jwt_secret": "old-secret-0123456789-0123456789-xx"})
    sealed = crypto.seal(old, "idp-refresh")
    assert "idp-refresh" not in sealed and crypto.unseal(old, sealed) == "idp-refresh"
    rotated = _cfg(
        session={"jwt_secret": ["new-secret-0123456789-0123456789-xx", "old-secret-0123456789-0123456789-xx"]}
    )
    assert crypto.unseal(rotated, sealed) == "idp-refresh"
    gone = _cfg(session={"jwt_secret": "new-secret-0123456789-0123456789-xx"})
    assert crypto.unseal(gone, sealed) is None
    assert crypto.unseal(old, sealed[:-2] + "AA") is None
    assert crypto.unseal(old, "garbage") is None
    assert crypto.unseal(old, sealed, b"another-purpose") is None


# --- claims -> user ---------------------------------------------------------------------------


def test_groups_claim_string_or_list() -> None:
    assert identity.groups_from_claim("eng ml") == ["eng", "ml"]
    assert identity.groups_from_claim("eng,ml") == ["eng", "ml"]
    assert identity.groups_from_claim(["eng", 3, "", "ml"]) == ["eng", "ml"]
    assert identity.groups_from_claim(None) == [] and identity.groups_from_claim({"a": 1}) == []


def test_claims_and_gates() -> None:
    cfg = _cfg(oidc={"groups_claim": "org.teams", "email_claim": "mail", "allowed_groups": ["ENG"]})
    user = identity.user_from_claims(cfg, {"sub": "s1", "mail": "a@x.com", "org": {"teams": "eng"}})
    assert user == identity.User(sub="s1", email="a@x.com", groups=("eng",))
    with pytest.raises(identity.Refused, match="not in a group"):
        identity.user_from_claims(cfg, {"sub": "s1", "mail": "a@x.com", "org": {"teams": ["sales"]}})
    with pytest.raises(identity.Refused, match="no email"):
        identity.user_from_claims(cfg, {"sub": "s1", "email": "a@x.com"})
    plain = _cfg(oidc={"allowed_email_domains": ["Acme.com"]})
    assert identity.user_from_claims(plain, {"sub": "s", "email": "b@acme.com"}).groups == ()
    with pytest.raises(identity.Refused, match=r"example\.com"):
        identity.user_from_claims(plain, {"sub": "s", "email": "b@example.com"})
    for flag in (False, "false"):
        with pytest.raises(identity.Refused, match="not verified"):
            identity.user_from_claims(plain, {"sub": "s", "email": "b@acme.com", "email_verified": flag})
    assert identity.user_from_claims(plain, {"sub": "s", "email": "b@acme.com", "email_verified": "true"})
    lax = _cfg(oidc={"require_email_verified": False})
    assert identity.user_from_claims(lax, {"sub": "s", "email": "b@acme.com", "email_verified": False})


# --- Google Workspace groups through the Directory API (a local stand-in speaking its JSON) ----


class _Directory(BaseHTTPRequestHandler):
    memberships: ClassVar[dict[str, list[str]]] = {}
    seen: ClassVar[list[dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        _Directory.seen.append(query)
        if parts.path != "/admin/directory/v1/groups":
            self._send(404, {"error": {"code": 404, "message": "Not Found"}})
            return
        user = query.get("userKey", [""])[0]
        if user not in self.memberships:
            self._send(404, {"error": {"code": 404, "message": "Resource Not Found: userKey"}})
            return
        groups = self.memberships[user]
        page = int(query.get("pageToken", ["0"])[0])
        chunk = groups[page : page + 2]
        body: dict[str, Any] = {
            "kind": "admin#directory#groups",
            "etag": '"x"',
            "groups": [
                {"kind": "admin#directory#group", "id": f"id{i}", "email": g, "name": g.split("@")[0]}
                for i, g in enumerate(chunk)
            ],
        }
        if page + 2 < len(groups):
            body["nextPageToken"] = str(page + 2)
        self._send(200, body)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def directory() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Directory)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Directory.memberships = {"ann@acme.com": ["eng@acme.com", "ml@acme.com", "all@acme.com"]}
    _Directory.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def test_google_groups_from_the_directory_api(directory: str) -> None:
    cfg = _cfg(
        oidc={
            "google_groups": {"admin_email": "it@acme.com", "endpoint": directory},
            "allowed_groups": ["eng@acme.com"],
        }
    )
    user = identity.user_from_claims(cfg, {"sub": "1", "email": "ann@acme.com", "groups": ["ignored"]})
    assert user.groups == ("eng@acme.com", "ml@acme.com", "all@acme.com")
    assert len(_Directory.seen) == 2 and _Directory.seen[0]["userKey"] == ["ann@acme.com"]
    _Directory.memberships["ann@acme.com"] = ["sales@acme.com"]
    with pytest.raises(identity.Refused, match="not in a group"):
        identity.user_from_claims(cfg, {"sub": "1", "email": "ann@acme.com"})
    with pytest.raises(identity.Refused, match="not a user"):
        identity.user_from_claims(cfg, {"sub": "2", "email": "bob@acme.com"})


# --- per-instance state derived from a config version --------------------------------------------


def test_a_reload_that_rotates_the_key_out_drops_verified_tokens() -> None:
    from common.auth import sessions

    old = _cfg(session={"jwt_secret": "k" * 40})
    token, _ = sessions.issue(old, sub="s", email="a@acme.com", groups=["eng"])
    assert sessions.verify(old, token).email == "a@acme.com"
    assert sessions.verify(old, token) is sessions.verify(old, token)  # served from this version's cache
    rotated = _cfg(session={"jwt_secret": "n" * 40})  # the next version no longer holds the key
    with pytest.raises(sessions.InvalidToken, match="unknown signing key"):
        sessions.verify(rotated, token)
    both = _cfg(session={"jwt_secret": ["n" * 40, "k" * 40]})
    assert sessions.verify(both, token).email == "a@acme.com"


def test_each_config_version_has_its_own_idp_provider() -> None:
    from common.auth import oidc

    first = _cfg(oidc={"issuer": "http://127.0.0.1:9/one"})
    assert oidc.provider(first) is oidc.provider(first)
    moved = _cfg(oidc={"issuer": "http://127.0.0.1:9/two"})
    assert oidc.provider(moved).issuer == "http://127.0.0.1:9/two"
    assert oidc.provider(first).issuer == "http://127.0.0.1:9/one"
    assert oidc.provider(moved).cached_metadata() is None  # nothing carried over from the old version
