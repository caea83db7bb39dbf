"""Fuzzing every endpoint for server errors (issue 14, finding 6): no input earns a 5xx.

Hypothesis generates request bodies for the bearer endpoints (/v1/messages,
count_tokens, the telemetry relay) and the OAuth endpoints; schemathesis walks
the admin API from its OpenAPI document in negative mode (the admin spend test
runs the positive one). The app is the real one-origin app on a real PostgreSQL,
and the model upstream is the stand-in, so a well-formed request really is
served: any 5xx here is the gateway's own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import LiveServer, live_gateway, schemathesis, token_for
from support.spend import setup_gateway

from gateway import standins

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

# JSON values, text with NUL, surrogates and other awkward code points included.
text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=25
)
content = st.one_of(
    text,
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image", "tool_use", "x"])},
            optional={"text": json_values, "name": json_values, "input": json_values},
        ),
        max_size=3,
    ),
    json_values,
)
message_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["claude-haiku-4-5", "claude-haiku-4-5\x00", "haiku", "", "claude-opus-4-5"]) | text,
        "max_tokens": st.integers(min_value=-5, max_value=200_000) | json_values,
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "x"]) | text, "content": content}),
            max_size=3,
        )
        | json_values,
        "stream": st.booleans() | json_values,
        "system": text | json_values,
        "tools": st.lists(
            st.fixed_dictionaries(
                {"name": text, "type": st.sampled_from(["web_fetch_20250910", "mcp_toolset", "custom"]) | text}
            ),
            max_size=3,
        )
        | json_values,
        "mcp_servers": json_values,
        "tool_choice": json_values,
        "metadata": json_values,
        "thinking": json_values,
    },
)


def _raw(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()  # lone surrogates survive as \\udXXX escapes


def _deepen(raw: bytes, depth: int) -> bytes:
    return b"[" * depth + raw + b"]" * depth


bodies = st.one_of(
    message_bodies.map(_raw),
    json_values.map(_raw),
    st.binary(max_size=200),
    st.tuples(message_bodies.map(_raw), st.integers(min_value=100, max_value=6000)).map(lambda t: _deepen(*t)),
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    handle = standins.start_upstream()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def gateway(tmp_path: Path, database_url: str, upstream: Any) -> Iterator[tuple[Any, str]]:
    from gateway import local

    extra = {
        "upstreams": [
            {
                "name": "vertex",
                "provider": "vertex",
                "project_id": "test-project",
                "region": "us-east5",
                "base_url": upstream.base_url,
                "auth": {"anonymous": "true"},
                "models": ["claude-*"],
            }
        ],
        "telemetry": {"forward_to": [{"url": "http://127.0.0.1:9", "metrics": True, "logs": True, "traces": True}]},
        "managed": {"policies": [{"name": "everyone", "tools": {"deny": ["WebFetch", "mcp__*"], "mode": "strip"}}]},
    }
    path = setup_gateway(tmp_path, database_url, extra)
    token = token_for(path)
    yield local.create_app().test_client(), token


def _no_5xx(response: Any, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.get_data()[:400])


BEARER_PATHS = ["/v1/messages", "/v1/messages/count_tokens", "/v1/metrics", "/v1/logs", "/v1/traces"]


@FUZZ
@given(path=st.sampled_from(BEARER_PATHS), body=bodies, encoding=st.sampled_from([None, "gzip", "br", "identity"]))
def test_bearer_endpoints_never_answer_5xx(
    gateway: tuple[Any, str], path: str, body: bytes, encoding: str | None
) -> None:
    client, token = gateway
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if encoding:
        headers["Content-Encoding"] = encoding
    response = client.post(path, data=body, headers=headers)
    _no_5xx(response, (path, body[:200]))
    if path.startswith("/v1/") and path not in ("/v1/messages", "/v1/messages/count_tokens"):
        assert response.status_code == 200  # the relay always answers 200


form_values = st.dictionaries(
    st.sampled_from(["grant_type", "device_code", "refresh_token", "token", "client_id", "surface", "scope", "x"])
    | text,
    text,
    max_size=5,
)


@FUZZ
@given(
    path=st.sampled_from(["/oauth/device_authorization", "/oauth/token", "/oauth/revoke", "/device"]),
    form=form_values,
    as_json=st.booleans(),
    raw=st.none() | bodies,
)
def test_oauth_endpoints_never_answer_5xx(
    gateway: tuple[Any, str], path: str, form: dict[str, str], as_json: bool, raw: bytes | None
) -> None:
    client, _ = gateway
    if raw is not None:
        response = client.post(path, data=raw, headers={"Content-Type": "application/json"})
    elif as_json:
        response = client.post(path, data=_raw(form), headers={"Content-Type": "application/json"})
    else:
        encoded = "&".join(f"{k}={v}" for k, v in form.items()).encode("utf-8", "surrogatepass")
        response = client.post(path, data=encoded, headers={"Content-Type": "application/x-www-form-urlencoded"})
    _no_5xx(response, (path, form, raw))


@FUZZ
@given(
    path=st.sampled_from(["/device", "/device/callback", "/v1/models", "/api/oauth/usage", "/managed/settings"]),
    query=st.dictionaries(
        st.sampled_from(["user_code", "state", "code", "error", "after_id", "limit"]) | text, text, max_size=4
    ),
)
def test_get_endpoints_never_answer_5xx(gateway: tuple[Any, str], path: str, query: dict[str, str]) -> None:
    client, token = gateway
    safe = {
        k.encode("utf-8", "surrogatepass").decode("utf-8", "replace"): v.encode("utf-8", "surrogatepass").decode(
            "utf-8", "replace"
        )
        for k, v in query.items()
    }
    _no_5xx(client.get(path, query_string=safe, headers={"Authorization": f"Bearer {token}"}), (path, query))


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    with live_gateway(setup_gateway(tmp_path, database_url)) as server:
        yield server


def test_schemathesis_negative_admin_api_finds_no_server_error(live: LiveServer, tmp_path: Path) -> None:
    result = schemathesis.run(live.url, tmp_path, "--mode", "negative", "--max-examples", "15", "--seed", "14")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_the_harness_serves_a_well_formed_request(gateway: tuple[Any, str]) -> None:
    """The fuzzed app is a working one: a valid request reaches the stand-in upstream and is answered."""
    client, token = gateway
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    response = client.post("/v1/messages", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data()[:300]
    assert response.get_json()["type"] == "message"
