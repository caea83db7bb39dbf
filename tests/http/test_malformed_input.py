"""Malformed input gets a 4xx in the endpoint's envelope, never a 500 (issue 14, findings 6 and 8).

Over HTTP on the one-origin app with a real PostgreSQL: deep JSON and lone
surrogates on /v1/messages and the admin API, NUL in admin session parameters
and in OAuth forms, the telemetry relay's "always 200", the audit row of a code
entry holding a NUL, and what /readyz says publicly when the database is down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import ADMIN_WRITE_KEY, LiveServer, base_config, free_port, live_gateway, signin, token_for, write_config
from support.logcapture import capture_logs
from support.spend import setup_gateway

from common.db import pool as store

WRITE = {"x-api-key": ADMIN_WRITE_KEY}


@pytest.fixture
def gateway(tmp_path: Path, database_url: str) -> Iterator[tuple[LiveServer, str]]:
    port = free_port()
    extra = {
        "listen": {"public_url": f"http://127.0.0.1:{port}"},
        "telemetry": {"forward_to": [{"url": "http://127.0.0.1:9", "metrics": True, "logs": True}]},
    }
    path = setup_gateway(tmp_path, database_url, extra)
    token = token_for(path)
    with live_gateway(path, port) as server:
        yield server, token


def _post_raw(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=30)


def _anthropic_400(response: requests.Response) -> str:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    return str(body["error"]["message"])


def _deep(depth: int) -> bytes:
    return b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": ' + b"[" * depth + b"]" * depth + b"}"


# /v1/messages keeps message content as raw JSON (it is forwarded, not decoded), so a body
# nested 300 deep is valid and goes upstream; what the parser cannot take is refused with a 400.
@pytest.mark.parametrize("depth", [5000, 100_000])
def test_deep_json_on_messages_is_a_400(gateway: tuple[LiveServer, str], depth: int) -> None:
    live, token = gateway
    response = _post_raw(f"{live.url}/v1/messages", _deep(depth), {"Authorization": f"Bearer {token}"})
    assert "nested deeper" in _anthropic_400(response)


def test_lone_surrogate_on_messages_is_a_400(gateway: tuple[LiveServer, str]) -> None:
    live, token = gateway
    body = b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "a\\ud800b"}]}'
    response = _post_raw(f"{live.url}/v1/messages", body, {"Authorization": f"Bearer {token}"})
    assert "surrogate" in _anthropic_400(response)
    # A real pair (an emoji, escaped) is text and still passes the body check.
    pair = body.replace(b"\\ud800", b"\\ud83d\\ude00")
    ok = _post_raw(f"{live.url}/v1/messages/count_tokens", pair, {"Authorization": f"Bearer {token}"})
    assert ok.status_code != 400 or "surrogate" not in ok.text


def test_deep_json_and_surrogates_on_admin_routes_are_400(gateway: tuple[LiveServer, str]) -> None:
    live, _ = gateway
    for path in ("/v1/organizations/spend_limits", "/v1/organizations/sessions/revoke"):
        deep = b'{"scope": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        _anthropic_400(_post_raw(live.url + path, deep, WRITE))
        _anthropic_400(_post_raw(live.url + path, b'{"email": "\\udc00@example.com"}', WRITE))


def test_nul_in_admin_session_parameters_is_a_400(gateway: tuple[LiveServer, str]) -> None:
    live, _ = gateway
    base = f"{live.url}/v1/organizations/sessions"
    for query in ("email=a%00b@example.com", "after_id=ses_%00", "page=%00", "include_revoked=%00"):
        response = requests.get(f"{base}?{query}", headers=WRITE, timeout=10)
        assert response.status_code in (200, 400), (query, response.status_code, response.text[:200])
        if "include_revoked" not in query:
            assert "NUL" in _anthropic_400(response)
    _anthropic_400(_post_raw(f"{base}/revoke", b'{"email": "a\\u0000b@example.com"}', WRITE))
    _anthropic_400(_post_raw(f"{base}/revoke", b'{"session_id": "ses_\\u0000"}', WRITE))
    _anthropic_400(requests.delete(f"{base}/ses_%00x", headers=WRITE, timeout=10))


@pytest.mark.parametrize("depth", [300, 5000])
def test_the_telemetry_relay_answers_200_to_deep_json(gateway: tuple[LiveServer, str], depth: int) -> None:
    live, token = gateway
    attribute = b'{"key": "k", "value": ' + b'{"kvlistValue": {"values": [{"key": "k", "value": ' * depth
    attribute += b"{}" + b"}]}}" * depth + b"}"
    body = b'{"resourceMetrics": [{"resource": {"attributes": [' + attribute + b"]}}]}"
    response = _post_raw(f"{live.url}/v1/metrics", body, {"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json() == {}
    surrogate = _post_raw(
        f"{live.url}/v1/logs", b'{"resourceLogs": [{"schemaUrl": "\\ud800"}]}', {"Authorization": f"Bearer {token}"}
    )
    assert surrogate.status_code == 200


def test_oauth_forms_with_nul_or_deep_json_are_400(gateway: tuple[LiveServer, str]) -> None:
    live, _ = gateway
    for form in ({"surface": "claude\x00code"}, {"surface\x00": "x"}):
        response = requests.post(f"{live.url}/oauth/device_authorization", data=form, timeout=10)
        assert response.status_code == 400 and response.json()["error"] == "invalid_request", response.text
    deep = _post_raw(f"{live.url}/oauth/token", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", {})
    assert deep.status_code == 400 and deep.json()["error"] == "invalid_request", deep.text


def _audit(action: str) -> list[list[Any]]:
    return store.get().execute("SELECT action, target FROM audit_log WHERE action = %s", (action,))


def test_a_code_entry_with_nul_keeps_its_audit_row(gateway: tuple[LiveServer, str]) -> None:
    live, _ = gateway
    browser = requests.Session()
    page = signin.submit_code(browser, live.url, "BCDF\x00GHJ")
    assert page.status_code == 400 and "not valid" in page.text
    rows = _audit("device.code_rejected")
    assert len(rows) == 1 and "\x00" not in rows[0][1], rows


def test_readyz_says_only_unavailable_publicly(tmp_path: Path) -> None:
    """Finding 8: the 503 body named the database host and port; now the log has the detail, not the body."""
    from support import activate

    path = write_config(tmp_path, base_config("postgresql://gw:pw@127.0.0.1:9/gateway"))
    activate(path)
    with capture_logs() as logs, live_gateway(path) as live:
        for probe in ("/readyz", "/_gateway/admin/readyz", "/_gateway/auth/readyz"):
            response = requests.get(live.url + probe, timeout=20)
            assert response.status_code == 503
            body = response.json()
            assert body["status"] == "unavailable" and body["database"] == "unavailable", body
            assert "127.0.0.1" not in response.text and ":9" not in response.text, response.text
    assert any("127.0.0.1" in str(line) for line in logs.lines()), "the detail goes to the log"
