"""The router: dispatch, OPTIONS/405/404, request ids, error rendering and access-log lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Request, Response
from support import activate, base_config, write_config
from support.logcapture import Captured

from common.core import logs
from common.http import App, annotate, json_response


@pytest.fixture(autouse=True)
def _config(tmp_path: Path) -> None:
    activate(write_config(tmp_path, base_config("postgresql://postgres@127.0.0.1:1/x")))


def _app() -> App:
    app = App("messages", oauth_paths=("/oauth/token",))

    @app.route("/v1/models", ["GET"])
    def models(request: Request) -> Response:
        logs.info("listing models")
        return json_response({"data": []})

    @app.route("/v1/models", ["POST"], prefix=True)
    def model(request: Request) -> Response:
        annotate(upstream="vertex", model="claude-sonnet-4-5")
        return json_response({"path": request.path})

    @app.route("/boom", ["GET"])
    def boom(request: Request) -> Response:
        raise RuntimeError("secret detail")

    @app.route("/oauth/token", ["POST"])
    def token(request: Request) -> Response:
        return json_response({})

    @app.route("/stream", ["GET"])
    def stream(request: Request) -> Response:
        annotate(upstream="anthropic")

        def body() -> Iterator[bytes]:
            try:
                logs.info("relaying")
                yield b"event: one\n\n"
                annotate(model="claude-haiku-4-5")  # learnt while streaming: still counts
                yield b"event: two\n\n"
            finally:
                logs.info("settled")

        return Response(body(), content_type="text/event-stream")

    return app


def call(app: App, path: str, method: str = "GET", **kw: Any) -> Response:
    with Flask("t").test_request_context(path, method=method, **kw) as ctx:
        return app(ctx.request)


def _access(captured: Captured) -> list[dict[str, Any]]:
    return [line for line in captured.lines() if line["message"] == "request"]


def test_dispatch_and_the_answers_for_what_no_route_takes() -> None:
    app = _app()
    assert call(app, "/v1/models/").get_json() == {"data": []}
    assert call(app, "/v1/models/claude-x", "POST").get_json() == {"path": "/v1/models/claude-x"}
    missing = call(app, "/v1/nothing")
    assert missing.status_code == 404 and missing.get_json()["error"]["type"] == "not_found_error"
    wrong = call(app, "/boom", "DELETE")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET"
    options = call(app, "/boom", "OPTIONS")
    assert options.status_code == 204 and options.headers["Allow"] == "GET"
    oauth = call(app, "/oauth/token", "GET")  # the OAuth path answers even a 405 in the OAuth shape
    assert oauth.status_code == 405 and oauth.get_json()["error"] == "invalid_request"
    assert oauth.headers["Cache-Control"] == "no-store"
    health = call(app, "/healthz")
    assert health.get_json() == {"status": "ok", "function": "messages"}


def test_request_id_on_the_response_and_on_every_line(captured: Captured) -> None:
    app = _app()
    response = call(app, "/v1/models")
    request_id = response.headers["request-id"]
    assert request_id.startswith("req_gw") and response.headers["x-gateway-function"] == "messages"
    assert [line.get("request_id") for line in captured.lines()] == [request_id, request_id]
    assert logs.current_request_id() is None  # reset once the request is answered
    assert call(app, "/v1/models").headers["request-id"] != request_id


def test_plain_access_line(captured: Captured) -> None:
    app = _app()
    plain = call(app, "/v1/models")
    annotated = call(app, "/v1/models/claude", "POST")
    failed = call(app, "/boom")
    assert failed.status_code == 500 and b"secret detail" not in failed.get_data()
    first, second, third = _access(captured)
    assert first["severity"] == "DEBUG" and first["status"] == 200
    assert first["bytes_sent"] == len(plain.get_data()) and first["latency_ms"] >= 0
    assert "upstream" not in first and "model" not in first
    assert (second["upstream"], second["model"]) == ("vertex", "claude-sonnet-4-5")
    assert second["bytes_sent"] == len(annotated.get_data())
    assert "upstream" not in third  # annotations end with their request
    assert third["severity"] == "WARNING" and third["status"] == 500
    assert [line["request_id"] for line in (first, second, third)] == [
        r.headers["request-id"] for r in (plain, annotated, failed)
    ]


def test_streamed_body_keeps_the_request_context(captured: Captured) -> None:
    response = call(_app(), "/stream")
    request_id = response.headers["request-id"]
    assert _access(captured) == []  # not before the stream has ended
    body = b"".join(response.response)
    response.close()
    lines = captured.lines()
    assert [line["message"] for line in lines] == ["relaying", "settled", "request"]
    assert all(line["request_id"] == request_id for line in lines)
    (access,) = _access(captured)
    assert access["bytes_sent"] == len(body) == 24
    assert (access["stream"], access["completed"], access["status"]) == (True, True, 200)
    assert (access["upstream"], access["model"]) == ("anthropic", "claude-haiku-4-5")
    assert logs.current_request_id() is None


def test_stream_closed_early_still_logs_once(captured: Captured) -> None:
    response = call(_app(), "/stream")
    chunks = iter(response.response)
    assert next(chunks) == b"event: one\n\n"
    response.close()  # the client went away: the server closes the body
    response.close()
    lines = captured.lines()
    assert [line["message"] for line in lines] == ["relaying", "settled", "request"]
    assert {line["request_id"] for line in lines} == {response.headers["request-id"]}
    (access,) = _access(captured)
    assert (access["completed"], access["bytes_sent"], access["upstream"]) == (False, 12, "anthropic")
    assert "model" not in access


def test_handlers_can_be_added_per_app() -> None:
    app = _app()

    @app.errors.register(RuntimeError)
    def runtime(exc: RuntimeError, request: Request) -> Response:
        return Response("teapot", status=418)

    assert call(app, "/boom").status_code == 418
    assert call(app, "/nowhere").status_code == 404  # GatewayError keeps its own handler
