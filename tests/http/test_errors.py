"""The error-handler registry: resolution by MRO, and the standard renderings of every error."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from flask import Flask, Request, Response
from support.logcapture import Captured

from common.config import ConfigError
from common.core.errors import GatewayError, OAuthError
from common.db.pool import DatabaseUnavailable
from common.http import errors


class Base(Exception):
    pass


class Child(Base):
    pass


class Other(Exception):
    pass


@pytest.fixture
def req() -> Iterator[Request]:
    with Flask("t").test_request_context("/v1/models") as ctx:
        yield ctx.request


def test_handlers_resolve_by_mro(req: Request) -> None:
    handlers = errors.ErrorHandlers()

    @handlers.register(Base)
    def base(exc: Base, request: Request) -> Response:
        return Response("base", status=418)

    assert handlers.resolve(Child) is base  # a subclass inherits its base's handler
    assert handlers.render(Child(), req).get_data() == b"base"
    assert handlers.resolve(Other) is None
    with pytest.raises(Other):  # nothing registered for it: not swallowed
        handlers.render(Other(), req)

    @handlers.register(Child)
    def child(exc: Child, request: Request) -> Response:
        return Response("child", status=409)

    assert handlers.resolve(Child) is child  # the nearest class wins
    assert handlers.resolve(Base) is base
    assert handlers.render(Child(), req).status_code == 409


def _json(response: Response) -> dict[str, object]:
    return json.loads(response.get_data())  # type: ignore[no-any-return]


def test_gateway_error_in_anthropic_envelope_or_oauth_shape(req: Request) -> None:
    handlers = errors.standard(oauth_paths=("/oauth/token",))
    plain = handlers.render(GatewayError(403, "nope", headers={"x-a": "1"}), req)
    assert plain.status_code == 403 and plain.headers["x-a"] == "1"
    assert _json(plain) == {"type": "error", "error": {"type": "permission_error", "message": "nope"}}
    assert "Cache-Control" not in plain.headers

    with Flask("t").test_request_context("/oauth/token/") as ctx:
        on_oauth = handlers.render(GatewayError(405, "use POST", headers={"Allow": "POST"}), ctx.request)
    assert on_oauth.status_code == 405 and on_oauth.headers["Allow"] == "POST"
    assert _json(on_oauth) == {"error": "invalid_request", "error_description": "use POST"}
    assert on_oauth.headers["Cache-Control"] == "no-store"


def test_oauth_error_is_not_cached(req: Request) -> None:
    response = errors.standard().render(OAuthError("invalid_grant", "gone", status=401), req)
    assert response.status_code == 401
    assert _json(response) == {"error": "invalid_grant", "error_description": "gone"}
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Pragma"] == "no-cache"


def test_operator_faults(req: Request, captured: Captured) -> None:
    handlers = errors.standard()
    bad_config = handlers.render(ConfigError(["store.postgres_url: missing"]), req)
    assert bad_config.status_code == 500
    assert _json(bad_config)["error"] == {
        "type": "api_error",
        "message": "The gateway is misconfigured; an operator must fix gateway.yaml (see logs).",
    }
    assert b"postgres_url" not in bad_config.get_data()  # the details are for the operator's log
    down = handlers.render(DatabaseUnavailable("connect refused"), req)
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    lines = captured.lines()
    assert [line["message"] for line in lines] == ["gateway.yaml is invalid", "database unavailable"]
    assert lines[0]["problems"] == ["store.postgres_url: missing"]


def test_anything_else_is_a_500_without_a_stack_trace(req: Request, captured: Captured) -> None:
    class Surprise(ValueError):
        pass

    def fail() -> None:
        raise Surprise("internal detail")

    try:
        fail()
    except Surprise as exc:
        response = errors.standard().render(exc, req)
    assert response.status_code == 500
    assert _json(response)["error"] == {"type": "api_error", "message": "Internal error in the gateway."}
    assert b"Traceback" not in response.get_data() and b"internal detail" not in response.get_data()
    (line,) = captured.lines()
    assert line["error_type"] == "Surprise" and "in fail" in line["trace"]
