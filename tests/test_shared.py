"""Shared building blocks: policy resolution, client IP, rate limits, admin auth, audit."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml
from flask import Flask, request
from hypothesis import given
from hypothesis import strategies as st
from support import ADMIN_READ_KEY, ADMIN_WRITE_KEY, activate, base_config, deep_merge, write_config

from common import admin_auth, audit, clientip, config, models, policy, ratelimit, sessions, store
from common.config import RateLimit
from common.errors import GatewayError, OAuthError

POLICIES = {
    "managed": {
        "policies": [
            {"name": "ml", "match": {"groups": ["ml-research"]}, "settings": {"availableModels": ["opus", "sonnet"]}},
            {"name": "contractors", "match": {"groups": ["Contractors"]}, "settings": {"availableModels": ["haiku"]}},
            {"name": "all", "settings": {"availableModels": ["sonnet", "haiku"]}},
        ]
    }
}


def _cfg(extra: dict | None = None) -> config.Config:
    data = deep_merge(base_config("postgresql://postgres@127.0.0.1:1/x"), extra or {})
    return config.parse(yaml.safe_dump(data), "t").config


def test_first_match_wins_and_catch_all_last() -> None:
    cfg = _cfg(POLICIES)
    assert policy.resolve(cfg, ["ml-research", "contractors"])[1].name == "ml"  # type: ignore[index]
    assert policy.resolve(cfg, ["CONTRACTORS"])[1].name == "contractors"  # type: ignore[index]
    assert policy.resolve(cfg, [])[1].name == "all"  # type: ignore[index]
    no_catch_all = _cfg({"managed": {"policies": POLICIES["managed"]["policies"][:2]}})
    assert policy.resolve(no_catch_all, ["eng"]) is None


def test_allowed_models_follow_available_models() -> None:
    cfg = _cfg(POLICIES)
    _, contractors = policy.resolve(cfg, ["contractors"])  # type: ignore[misc]
    assert policy.allowed_models(cfg, contractors) == ["claude-haiku-4-5"]
    assert policy.model_allowed(contractors, "claude-haiku-4-5-20251001")
    assert policy.model_allowed(contractors, "Claude-Haiku-4-5")
    assert not policy.model_allowed(contractors, "claude-opus-4-5")
    assert not policy.model_allowed(contractors, "claude-opus-4-5[1m]")


@given(st.sampled_from(["opus", "sonnet", "haiku"]), st.integers(1, 9), st.integers(0, 9))
def test_family_alias_matches_every_spelling(fam: str, major: int, minor: int) -> None:
    model_id = f"claude-{fam}-{major}-{minor}"
    for spelling in (model_id, model_id.upper(), f"{model_id}-20250101", f"{model_id}@20250101", f"{model_id}[1m]"):
        assert models.entry_matches(fam, spelling)
        assert models.canonical(spelling) == model_id
        others = {"opus", "sonnet", "haiku"} - {fam}
        assert not any(models.entry_matches(o, spelling) for o in others)


def test_display_name() -> None:
    assert models.display_name("claude-sonnet-4-5-20250929") == "Claude Sonnet 4.5"


def _request_ip(cfg: config.Config, remote: str, forwarded: str | None) -> str:
    app = Flask("t")
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with app.test_request_context("/", headers=headers, environ_base={"REMOTE_ADDR": remote}):
        return clientip.client_ip(request, cfg)


def test_forwarded_for_only_from_trusted_proxies() -> None:
    cfg = _cfg({"listen": {"trusted_proxies": ["35.191.0.0/16", "10.0.0.0/8"]}})
    assert _request_ip(cfg, "203.0.113.9", "1.2.3.4") == "203.0.113.9"  # untrusted peer: header ignored
    assert _request_ip(cfg, "35.191.1.1", "1.2.3.4") == "1.2.3.4"
    # A client-supplied hop to the left of the real one is not believed.
    assert _request_ip(cfg, "35.191.1.1", "6.6.6.6, 1.2.3.4, 10.1.1.1") == "1.2.3.4"


def test_rate_limit_counts_across_instances(database_url: str) -> None:
    dbs = [store.Database(config.Store(postgres_url=database_url)) for _ in range(3)]
    store.migrate(dbs[0])
    limit = RateLimit(max=20, window_seconds=600)
    refused: list[int] = []

    def hammer(db: store.Database) -> None:
        for _ in range(10):
            try:
                ratelimit.check("device_verify:198.51.100.1", limit, "code guesses", db)
            except OAuthError as exc:
                assert exc.error == "slow_down" and exc.status == 429
                assert int(exc.headers["Retry-After"]) > 0
                refused.append(1)

    threads = [threading.Thread(target=hammer, args=(db,)) for db in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refused) == 10  # 30 hits, 20 allowed, wherever they landed
    ratelimit.check("device_verify:198.51.100.2", limit, "code guesses", dbs[0])  # another address is unaffected
    for db in dbs:
        db.close()


def _admin_request(cfg: config.Config, headers: dict[str, str], need: str) -> admin_auth.Admin:
    app = Flask("t")
    with app.test_request_context("/", headers=headers):
        return admin_auth.authenticate(request, cfg, need)  # type: ignore[arg-type]


def test_admin_keys_and_groups(tmp_path: Path) -> None:
    cfg = _cfg()
    assert _admin_request(cfg, {"x-api-key": ADMIN_WRITE_KEY}, "write").actor == "key:test-write"
    assert _admin_request(cfg, {"x-api-key": ADMIN_READ_KEY}, "read").access == "read"
    with pytest.raises(GatewayError) as info:
        _admin_request(cfg, {"x-api-key": ADMIN_READ_KEY}, "write")
    assert info.value.status == 403
    with pytest.raises(GatewayError) as info:
        _admin_request(cfg, {"x-api-key": ADMIN_WRITE_KEY + "x"}, "read")
    assert info.value.status == 401
    with pytest.raises(GatewayError) as info:
        _admin_request(cfg, {}, "read")
    assert info.value.status == 401
    admin_token, _ = sessions.issue(cfg, sub="a", email="admin@example.com", groups=["claude-admins"])
    assert _admin_request(cfg, {"Authorization": f"Bearer {admin_token}"}, "write").actor == "admin@example.com"
    dev_token, _ = sessions.issue(cfg, sub="d", email="dev@example.com", groups=["eng"])
    with pytest.raises(GatewayError) as info:
        _admin_request(cfg, {"Authorization": f"Bearer {dev_token}"}, "read")
    assert info.value.status == 403 and "dev@example.com" in info.value.message


def test_audit_rows_are_written(tmp_path: Path, database_url: str) -> None:
    activate(write_config(tmp_path, base_config(database_url)))
    audit.record(
        "spend_limit.update", actor="key:x", target="user:a@x.com", before={"amount": "1"}, after={"amount": "2"}
    )
    rows = store.get().execute("SELECT actor, action, target, before->>'amount', after->>'amount' FROM audit_log")
    assert [tuple(r) for r in rows] == [("key:x", "spend_limit.update", "user:a@x.com", "1", "2")]


def test_access_control_refuses_addresses(tmp_path: Path, database_url: str) -> None:
    from gateway import local

    data = deep_merge(base_config(database_url), {"access_control": {"deny_cidrs": ["127.0.0.0/8"]}})
    activate(write_config(tmp_path, data))
    client = local.create_app().test_client()
    response = client.get("/v1/models")
    assert response.status_code == 403
    assert response.get_json()["error"]["type"] == "permission_error"
    assert client.get("/healthz").status_code == 200  # probes are not refused

    data = deep_merge(base_config(database_url), {"access_control": {"allow_cidrs": ["10.0.0.0/8"]}})
    activate(write_config(tmp_path, data, "allow.yaml"))
    assert local.create_app().test_client().get("/v1/models").status_code == 403
