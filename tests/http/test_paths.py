"""The path table: the local router sends each path of PROTOCOL.md to its function."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import activate, base_config, write_config

from common import paths

# PROTOCOL.md's table (one origin), path -> the function that must serve it.
PROTOCOL_TABLE = [
    ("GET", "/.well-known/oauth-authorization-server", "auth"),
    ("POST", "/oauth/device_authorization", "auth"),
    ("GET", "/device", "auth"),
    ("POST", "/oauth/token", "auth"),
    ("POST", "/oauth/revoke", "auth"),
    ("POST", "/v1/messages", "messages"),
    ("POST", "/v1/messages?beta=true", "messages"),
    ("POST", "/v1/messages/count_tokens", "messages"),
    ("GET", "/managed/settings", "messages"),
    ("GET", "/v1/models", "messages"),
    ("POST", "/v1/metrics", "messages"),
    ("POST", "/v1/logs", "messages"),
    ("POST", "/v1/traces", "messages"),
    ("GET", "/api/oauth/usage", "messages"),
    ("GET", "/v1/organizations/spend_limits", "admin"),
    ("POST", "/v1/organizations/spend_limits", "admin"),
]


@pytest.mark.parametrize(("method", "path", "function"), PROTOCOL_TABLE)
def test_function_for(method: str, path: str, function: str) -> None:
    assert paths.function_for(path.split("?")[0]) == function


def test_local_router_sends_each_path_to_its_function(tmp_path: Path, database_url: str) -> None:
    from gateway import local

    activate(write_config(tmp_path, base_config(database_url)))
    client = local.create_app().test_client()
    for method, path, function in PROTOCOL_TABLE:
        response = client.open(path, method=method)
        assert response.headers["x-gateway-function"] == function, (method, path)
        assert response.status_code < 500 or response.status_code == 501, (method, path, response.data)
        assert response.headers["request-id"].startswith("req_")


def test_prefix_routes_do_not_capture_neighbours() -> None:
    assert paths.function_for("/devices") == paths.DEFAULT_FUNCTION
    assert paths.function_for("/device/callback") == "auth"
    assert paths.function_for("/v1/messagesX") == paths.DEFAULT_FUNCTION


def test_url_map_covers_every_route() -> None:
    table = paths.url_map()
    assert "/oauth/*" in table["auth"]
    assert "/v1/messages" in table["messages"] and "/v1/messages/*" in table["messages"]
    every = [p for patterns in table.values() for p in patterns]
    assert len(every) == len(set(every))
