"""The admin API over HTTP on the one-origin app: spend limits, analytics, explain, audit log,
the OpenAPI document, auth (read key refused on writes), audit rows, and schemathesis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import ADMIN_READ_KEY, ADMIN_WRITE_KEY, LiveServer, live_gateway, schemathesis, token_for
from support.spend import request_info, setup_gateway

from common import config
from common.core.usage import Usage
from common.db import pool as store
from common.proxy import metering

BASE = "/v1/organizations/spend_limits"
WRITE = {"x-api-key": ADMIN_WRITE_KEY}
READ = {"x-api-key": ADMIN_READ_KEY}


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    path = setup_gateway(
        tmp_path,
        database_url,
        {
            "managed": {
                "policies": [
                    {
                        "name": "contractors",
                        "match": {"groups": ["contractors"]},
                        "settings": {"availableModels": ["haiku"]},
                        "tools": {"deny": ["Bash"], "mode": "strip"},
                    },
                    {"name": "everyone", "settings": {"availableModels": ["opus", "sonnet", "haiku"]}},
                ]
            }
        },
    )
    with live_gateway(path) as server:
        yield server


def call(
    live: LiveServer, method: str, path: str, headers: dict[str, str] | None = WRITE, **kw: Any
) -> requests.Response:
    return requests.request(method, live.url + path, headers=headers, timeout=15, **kw)


def create(live: LiveServer, scope: dict[str, Any], period: str, amount: Any, **extra: Any) -> requests.Response:
    return call(live, "POST", BASE, json={"scope": scope, "period": period, "amount": amount, **extra})


def error_of(response: requests.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["type"] == "error"
    return response.status_code, body["error"]["type"], body["error"]["message"]


def audit_rows() -> list[list[Any]]:
    return store.get().execute("SELECT actor, action, target, before, after FROM audit_log ORDER BY id")


def test_spend_limit_lifecycle_and_audit(live: LiveServer) -> None:
    created = create(live, {"type": "user", "user_id": "A@Example.com"}, "daily", "5000")
    assert created.status_code == 201, created.text
    obj = created.json()
    assert obj["type"] == "spend_limit" and obj["id"].startswith("splim_")
    assert obj["scope"] == {"type": "user", "user_id": "a@example.com"}
    assert (obj["period"], obj["amount"], obj["currency"], obj["period_to_date_spend"]) == ("daily", "5000", "USD", "0")
    assert obj["created_at"].endswith("Z") and obj["updated_at"].endswith("Z")

    # Upsert by scope + period: same id, 200, new amount.
    again = create(live, {"type": "user", "user_id": "a@example.com"}, "daily", 7500)
    assert again.status_code == 200 and again.json()["id"] == obj["id"] and again.json()["amount"] == "7500"

    # Spend shows up as period_to_date_spend (cents as a decimal string).
    cfg = config.current()
    ticket = metering.begin(cfg, request_info(email="a@example.com"))
    metering.finish(cfg, ticket, Usage(input_tokens=1_234_567), 200)  # Haiku 4.5: $1.234567
    got = call(live, "GET", f"{BASE}/{obj['id']}", READ)
    assert got.status_code == 200 and got.json()["period_to_date_spend"] == "123.4567"

    updated = call(live, "POST", f"{BASE}/{obj['id']}", json={"amount": "100.5"})
    assert updated.status_code == 200 and updated.json()["amount"] == "100.5"
    deleted = call(live, "DELETE", f"{BASE}/{obj['id']}")
    assert deleted.json() == {"id": obj["id"], "type": "spend_limit_deleted"}
    assert error_of(call(live, "GET", f"{BASE}/{obj['id']}", READ))[:2] == (404, "not_found_error")
    assert error_of(call(live, "DELETE", f"{BASE}/{obj['id']}"))[0] == 404

    rows = audit_rows()
    assert [r[1] for r in rows] == [
        "spend_limit.create",
        "spend_limit.update",
        "spend_limit.update",
        "spend_limit.delete",
    ]
    assert all(r[0] == "key:test-write" and r[2] == obj["id"] for r in rows)
    assert rows[0][3] is None and rows[0][4]["amount"] == "5000"
    assert rows[1][3]["amount"] == "5000" and rows[1][4]["amount"] == "7500"
    assert rows[2][3]["amount"] == "7500" and rows[2][4]["amount"] == "100.5"
    assert rows[3][3]["amount"] == "100.5" and rows[3][4] is None

    # The audit log route pages through them, newest first.
    page = call(live, "GET", "/v1/organizations/audit_log?limit=3", READ).json()
    assert [e["action"] for e in page["data"]] == ["spend_limit.delete", "spend_limit.update", "spend_limit.update"]
    assert page["has_more"] is True and page["data"][0]["before"]["amount"] == "100.5"
    rest = call(live, "GET", f"/v1/organizations/audit_log?limit=3&after_id={page['next_page']}", READ).json()
    assert [e["action"] for e in rest["data"]] == ["spend_limit.create"] and rest["has_more"] is False
    back = call(live, "GET", f"/v1/organizations/audit_log?limit=2&before_id={rest['data'][0]['id']}", READ).json()
    assert [e["action"] for e in back["data"]] == ["spend_limit.update", "spend_limit.update"]
    only = call(live, "GET", "/v1/organizations/audit_log?action=spend_limit.create", READ).json()
    assert len(only["data"]) == 1


def test_list_pagination_and_filter(live: LiveServer) -> None:
    ids = []
    for i in range(7):
        ids.append(create(live, {"type": "user", "user_id": f"u{i}@example.com"}, "monthly", 100 * i).json()["id"])
    ids.append(create(live, {"type": "rbac_group", "rbac_group_id": "eng"}, "weekly", "2500", pooled=True).json()["id"])
    ids.append(create(live, {"type": "organization"}, "monthly", "1000000").json()["id"])
    first = call(live, "GET", f"{BASE}?limit=4", READ).json()
    assert [o["id"] for o in first["data"]] == ids[:4] and first["has_more"] is True
    assert first["first_id"] == ids[0] and first["last_id"] == ids[3]
    second = call(live, "GET", f"{BASE}?limit=4&after_id={first['last_id']}", READ).json()
    assert [o["id"] for o in second["data"]] == ids[4:8]
    third = call(live, "GET", f"{BASE}?limit=4&page={second['next_page']}", READ).json()
    assert [o["id"] for o in third["data"]] == ids[8:] and third["has_more"] is False and third["next_page"] is None
    before = call(live, "GET", f"{BASE}?limit=2&before_id={ids[4]}", READ).json()
    assert [o["id"] for o in before["data"]] == ids[2:4] and before["has_more"] is True
    groups = call(live, "GET", f"{BASE}?scope_type=rbac_group", READ).json()["data"]
    assert len(groups) == 1 and groups[0]["scope"] == {"type": "rbac_group", "rbac_group_id": "eng"}
    assert groups[0]["pooled"] is True
    org = call(live, "GET", f"{BASE}?scope_type=organization", READ).json()["data"]
    assert org[0]["scope"] == {"type": "organization"}
    assert error_of(call(live, "GET", f"{BASE}?limit=0", READ))[2].startswith("limit:")
    assert error_of(call(live, "GET", f"{BASE}?after_id=splim_nope", READ))[2].startswith("after_id:")
    assert error_of(call(live, "GET", f"{BASE}?scope_type=team", READ))[2].startswith("scope_type:")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"period": "daily", "amount": "1"}, "scope"),
        ({"scope": {"type": "team"}, "period": "daily", "amount": "1"}, "scope.type"),
        ({"scope": {"type": "user"}, "period": "daily", "amount": "1"}, "scope.user_id"),
        ({"scope": {"type": "user", "user_id": "not-an-email"}, "period": "daily", "amount": "1"}, "scope.user_id"),
        (
            {"scope": {"type": "rbac_group", "rbac_group_id": ""}, "period": "daily", "amount": "1"},
            "scope.rbac_group_id",
        ),
        ({"scope": {"type": "organization", "user_id": "x"}, "period": "daily", "amount": "1"}, "scope.user_id"),
        ({"scope": {"type": "organization"}, "period": "hourly", "amount": "1"}, "period"),
        ({"scope": {"type": "organization"}, "period": "daily"}, "amount"),
        ({"scope": {"type": "organization"}, "period": "daily", "amount": "-5"}, "amount"),
        ({"scope": {"type": "organization"}, "period": "daily", "amount": "ten"}, "amount"),
        ({"scope": {"type": "organization"}, "period": "daily", "amount": "1.00001"}, "amount"),
        ({"scope": {"type": "organization"}, "period": "daily", "amount": 1.5}, "amount"),
        ({"scope": {"type": "organization"}, "period": "daily", "amount": "1", "currency": "EUR"}, "currency"),
        ({"scope": {"type": "organization"}, "period": "daily", "amount": "1", "pooled": True}, "pooled"),
        ({"scope": {"type": "organization"}, "period": "daily", "amount": "1", "colour": "red"}, "colour"),
        ({"scope": {"type": "user", "user_id": "a\u0000@x.com"}, "period": "daily", "amount": "1"}, "scope.user_id"),
    ],
)
def test_validation_errors_name_the_field(live: LiveServer, body: dict[str, Any], field: str) -> None:
    status, kind, message = error_of(call(live, "POST", BASE, json=body))
    assert (status, kind) == (400, "invalid_request_error")
    assert message.startswith(field + ":"), message
    assert store.get().execute("SELECT count(*) FROM spend_limits")[0][0] == 0


def test_malformed_bodies_and_immutable_fields(live: LiveServer) -> None:
    assert (
        error_of(call(live, "POST", BASE, data=b"{not json", headers={**WRITE, "content-type": "application/json"}))[0]
        == 400
    )
    assert error_of(call(live, "POST", BASE, json=[1, 2]))[0] == 400
    obj = create(live, {"type": "rbac_group", "rbac_group_id": "eng"}, "daily", "10").json()
    message = error_of(call(live, "POST", f"{BASE}/{obj['id']}", json={"period": "weekly"}))[2]
    assert message.startswith("period: cannot change")
    message = error_of(call(live, "POST", f"{BASE}/{obj['id']}", json={"scope": {"type": "organization"}}))[2]
    assert message.startswith("scope: cannot change")
    assert error_of(call(live, "POST", f"{BASE}/splim_missing", json={"amount": "1"}))[0] == 404
    assert error_of(call(live, "GET", f"{BASE}/{obj['id']}/extra", READ))[0] == 404


def test_auth_read_key_refused_on_writes(live: LiveServer, tmp_path: Path) -> None:
    body = {"scope": {"type": "organization"}, "period": "daily", "amount": "1"}
    assert error_of(call(live, "POST", BASE, READ, json=body))[:2] == (403, "permission_error")
    assert error_of(call(live, "POST", BASE, None, json=body))[:2] == (401, "authentication_error")
    assert error_of(call(live, "POST", BASE, {"x-api-key": "wrong" * 10}, json=body))[:2] == (
        401,
        "authentication_error",
    )
    obj = create(live, {"type": "organization"}, "daily", "1").json()
    assert error_of(call(live, "DELETE", f"{BASE}/{obj['id']}", READ))[0] == 403
    assert error_of(call(live, "POST", f"{BASE}/{obj['id']}", READ, json={"amount": "2"}))[0] == 403
    for path in (
        BASE,
        f"{BASE}/{obj['id']}",
        "/v1/organizations/audit_log",
        "/v1/organizations/analytics/cost?starting_at=2026-01-01",
    ):
        assert call(live, "GET", path, READ).status_code == 200
        assert call(live, "GET", path, None).status_code == 401
    # A session of an admin group acts as a write admin; other sessions are refused.
    admin = token_for(live_config(), "boss@example.com", ("claude-admins",))
    dev = token_for(live_config(), "dev@example.com", ("eng",))
    assert call(live, "POST", BASE, {"Authorization": f"Bearer {admin}"}, json=body).status_code == 200
    assert error_of(call(live, "GET", BASE, {"Authorization": f"Bearer {dev}"}))[0] == 403
    assert audit_rows()[-1][0] == "boss@example.com"
    # Only the writes above are audited (none of the refused ones).
    assert [r[1] for r in audit_rows()] == ["spend_limit.create", "spend_limit.update"]


def live_config() -> Path:
    return Path(config.active_location())


def test_cost_analytics(live: LiveServer) -> None:
    from datetime import UTC, datetime

    cfg = config.current()
    for email, groups, model, tokens in (
        ("a@example.com", ("eng", "ml"), "claude-haiku-4-5", 1_000_000),
        ("a@example.com", ("eng", "ml"), "claude-sonnet-4-5", 1_000_000),
        ("b@example.com", ("eng",), "claude-haiku-4-5", 500_000),
        ("c@example.com", (), "claude-haiku-4-5", 10),
    ):
        ticket = metering.begin(cfg, request_info(email=email, groups=groups, model=model))
        metering.finish(cfg, ticket, Usage(input_tokens=tokens), 200)
    today = datetime.now(UTC).date().isoformat()
    q = f"/v1/organizations/analytics/cost?starting_at={today}"
    by_day = call(live, "GET", q, READ).json()
    assert by_day["data"] == [
        {
            "day": today,
            "amount": "450.001",
            "currency": "USD",
            "requests": 4,
            "input_tokens": 2_500_010,
            "output_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
    ]
    assert by_day["total_amount"] == "450.001"
    by_user = call(live, "GET", q + "&group_by=user", READ).json()["data"]
    assert {r["user"]: r["amount"] for r in by_user} == {
        "a@example.com": "400",
        "b@example.com": "50",
        "c@example.com": "0.001",
    }
    by_group = call(live, "GET", q + "&group_by=group,user", READ).json()["data"]
    assert {(r["group"], r["user"]): r["amount"] for r in by_group} == {
        ("eng", "a@example.com"): "400",
        ("eng", "b@example.com"): "50",
        ("ml", "a@example.com"): "400",
        (None, "c@example.com"): "0.001",
    }
    eng = call(live, "GET", q + "&group=eng&group_by=model", READ).json()["data"]
    assert {r["model"]: r["amount"] for r in eng} == {"claude-haiku-4-5": "150", "claude-sonnet-4-5": "300"}
    assert error_of(call(live, "GET", "/v1/organizations/analytics/cost", READ))[2].startswith("starting_at:")
    assert error_of(call(live, "GET", q + "&group_by=colour", READ))[2].startswith("group_by:")
    assert error_of(call(live, "GET", q + "&ending_at=2000-01-01", READ))[2].startswith("ending_at:")
    assert error_of(call(live, "GET", "/v1/organizations/analytics/cost?starting_at=yesterday", READ))[0] == 400


def test_policy_explain(live: LiveServer) -> None:
    create(live, {"type": "rbac_group", "rbac_group_id": "contractors"}, "daily", "500")
    create(live, {"type": "organization"}, "monthly", "100000")
    got = call(live, "GET", "/v1/organizations/policy/explain?email=c@example.com&groups=contractors", READ)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["email"] == "c@example.com" and body["groups"] == ["contractors"]
    assert body["policy"] == "contractors"
    assert body["models"]["allowed"] == ["claude-haiku-4-5"]
    assert body["tools"] == {"allow": [], "deny": ["Bash"], "mode": "strip"}
    caps = {(c["scope"], c["period"]): c for c in body["spend"]["caps"]}
    assert caps[("rbac_group", "daily")]["amount"] == "500"
    assert caps[("organization", "monthly")]["amount"] == "100000"
    everyone = call(live, "GET", "/v1/organizations/policy/explain?email=d@example.com", READ).json()
    assert everyone["policy"] == "everyone" and len(everyone["models"]["allowed"]) == 3
    assert [c["scope"] for c in everyone["spend"]["caps"]] == ["organization"]
    assert error_of(call(live, "GET", "/v1/organizations/policy/explain", READ))[2].startswith("email:")


def test_openapi_document_is_served_and_matches_the_checked_in_file(live: LiveServer) -> None:
    import yaml

    served = call(live, "GET", "/v1/organizations/openapi.json", None)
    assert served.status_code == 200
    doc = served.json()
    assert doc["openapi"].startswith("3.1")
    checked_in = yaml.safe_load((Path(__file__).resolve().parents[2] / "common/admin/openapi.yaml").read_text())
    assert doc == checked_in
    # Every admin route of this module is documented.
    for path in (
        BASE,
        BASE + "/{spend_limit_id}",
        "/v1/organizations/analytics/cost",
        "/v1/organizations/policy/explain",
        "/v1/organizations/audit_log",
    ):
        assert path in doc["paths"]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(live: LiveServer, tmp_path: Path) -> None:
    create(live, {"type": "organization"}, "monthly", "100")  # something to get, update, delete
    result = schemathesis.run(live.url, tmp_path, "--max-examples", "25", "--seed", "7")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    import re

    cases = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert cases and int(cases.group(1)) >= 100 and cases.group(1) == cases.group(2), result.stdout[-3000:]


def test_a_read_only_admin_group_reads_every_admin_endpoint_and_writes_none(tmp_path: Path, database_url: str) -> None:
    """Members of admin.viewer_groups (the console's read-only admins) may GET the admin API; every write is a 403
    in Anthropic's envelope that says why, and changes nothing (no row, no audit)."""
    path = setup_gateway(tmp_path, database_url, {"admin": {"viewer_groups": ["finance"]}})
    with live_gateway(path) as server:
        limit = call(server, "POST", BASE, json={"scope": {"type": "organization"}, "period": "daily", "amount": "5"})
        assert limit.status_code == 201, limit.text
        lid = limit.json()["id"]
        viewer = {"Authorization": "Bearer " + token_for(path, "fin@example.com", ("Finance",))}
        for read in (
            BASE,
            f"{BASE}/{lid}",
            "/v1/organizations/analytics/cost?starting_at=2026-01-01",
            "/v1/organizations/policy/explain?email=dev@example.com&groups=eng",
            "/v1/organizations/audit_log",
            "/v1/organizations/sessions?email=dev@example.com",
            "/v1/organizations/openapi.json",
        ):
            response = call(server, "GET", read, viewer)
            assert response.status_code == 200, (read, response.text)
        before = audit_rows()
        for method, write, body in (
            ("POST", BASE, {"scope": {"type": "organization"}, "period": "weekly", "amount": "9"}),
            ("POST", f"{BASE}/{lid}", {"amount": "1"}),
            ("DELETE", f"{BASE}/{lid}", None),
            ("POST", "/v1/organizations/sessions/revoke", {"email": "dev@example.com"}),
            ("DELETE", "/v1/organizations/sessions/dev@example.com", None),
        ):
            status, kind, message = error_of(call(server, method, write, viewer, json=body))
            assert (status, kind) == (403, "permission_error"), (method, write)
            assert "fin@example.com is in a read-only admin group (admin.viewer_groups)" in message
        assert audit_rows() == before
        assert call(server, "GET", f"{BASE}/{lid}", READ).json()["amount"] == "5"
        # Neither admin nor viewer group: refused, and the message names both kinds of group.
        dev = {"Authorization": "Bearer " + token_for(path, "dev@example.com", ("eng",))}
        status, _, message = error_of(call(server, "GET", BASE, dev))
        assert status == 403 and "claude-admins, finance" in message
