"""The thin HTTP layer every function shares.

functions-framework hands each function every path and method as a
`flask.Request`; an `App` maps (path, method) to a handler, answers the health
probes, gives each request an id, renders `GatewayError`/`OAuthError` in their
envelopes and turns anything unexpected into a 500 `api_error` without a stack
trace (the trace goes to the log). Handlers return `flask.Response` objects,
streaming ones included.
"""

from __future__ import annotations

import json
import secrets
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Request, Response

from common import config, paths
from common.config import ConfigError
from common.core import logs
from common.core.errors import GatewayError, OAuthError, envelope

Handler = Callable[[Request], Response]

JSON = "application/json"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"))
    return Response(body, status=status, headers=headers, content_type=JSON)


def new_request_id() -> str:
    return "req_gw" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class _Route:
    path: str
    methods: frozenset[str]
    handler: Handler
    prefix: bool


class App:
    """Routes of one function. `app(request)` is the functions-framework target."""

    def __init__(self, name: str, oauth_paths: Iterable[str] = ()) -> None:
        self.name = name
        self._exact: dict[str, list[_Route]] = {}
        self._prefixed: list[_Route] = []
        self._oauth_paths = frozenset(oauth_paths)

    def route(self, path: str, methods: Iterable[str] = ("GET",), prefix: bool = False) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            entry = _Route(path.rstrip("/") or "/", frozenset(m.upper() for m in methods), handler, prefix)
            if prefix:
                self._prefixed.append(entry)
            else:
                self._exact.setdefault(entry.path, []).append(entry)
            return handler

        return register

    def _match(self, path: str) -> list[_Route]:
        normalized = path.rstrip("/") or "/"
        found = self._exact.get(normalized)
        if found:
            return found
        return [r for r in self._prefixed if normalized == r.path or normalized.startswith(r.path + "/")]

    def __call__(self, request: Request) -> Response:
        request_id = new_request_id()
        token = logs.set_request_id(request_id)
        started = time.perf_counter()
        try:
            response = self._dispatch(request)
        finally:
            logs.reset_request_id(token)
        response.headers["request-id"] = request_id
        response.headers["x-gateway-function"] = self.name
        status = response.status_code
        if status >= 500 or not response.is_streamed:
            elapsed = (time.perf_counter() - started) * 1000
            logs.log(
                "WARNING" if status >= 500 else "DEBUG",
                "request",
                function=self.name,
                request_id=request_id,
                method=request.method,
                path=request.path,
                status=status,
                latency_ms=round(elapsed, 2),
            )
        return response

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        try:
            kind = paths.health_kind(path)
            if kind is not None and not self._match(path):
                return self._health(kind)
            _check_access(request)
            routes = self._match(path)
            if not routes:
                raise GatewayError(404, f"No such endpoint: {request.method} {path}", "not_found_error")
            for route in routes:
                if request.method in route.methods:
                    return route.handler(request)
            if request.method == "OPTIONS":
                return Response(status=204, headers={"Allow": ", ".join(sorted(routes[0].methods))})
            raise GatewayError(
                405,
                f"{request.method} is not allowed on {path}; use {', '.join(sorted(routes[0].methods))}",
                headers={"Allow": ", ".join(sorted(routes[0].methods))},
            )
        except GatewayError as exc:
            if request.path.rstrip("/") in self._oauth_paths:  # OAuth endpoints answer in the OAuth shape
                oauth = OAuthError("invalid_request", exc.message, status=exc.status, headers=exc.headers)
                return Response(
                    oauth.body(), status=exc.status, headers={**NO_STORE, **oauth.headers}, content_type=JSON
                )
            return Response(exc.body(), status=exc.status, headers=exc.headers, content_type=JSON)
        except OAuthError as exc:
            return Response(exc.body(), status=exc.status, headers={**NO_STORE, **exc.headers}, content_type=JSON)
        except ConfigError as exc:
            logs.error("gateway.yaml is invalid", problems=exc.problems)
            return Response(
                envelope("api_error", "The gateway is misconfigured; an operator must fix gateway.yaml (see logs)."),
                status=500,
                content_type=JSON,
            )
        except Exception as exc:
            from common.db.pool import DatabaseUnavailable

            if isinstance(exc, DatabaseUnavailable):
                logs.error("database unavailable", error=str(exc))
                return Response(
                    envelope("api_error", "The gateway's database is unavailable; try again shortly."),
                    status=503,
                    headers={"retry-after": "5"},
                    content_type=JSON,
                )
            logs.error(
                "unhandled error",
                error_type=type(exc).__name__,
                trace="".join(traceback.format_exception(exc)[-8:]),
            )
            return Response(envelope("api_error", "Internal error in the gateway."), status=500, content_type=JSON)

    def _health(self, kind: str) -> Response:
        if kind == "healthz":
            return json_response({"status": "ok", "function": self.name})
        from common.db import pool as store

        ok, detail = store.ready()
        return json_response(
            {"status": "ok" if ok else "unavailable", "function": self.name, "database": detail},
            status=200 if ok else 503,
        )


def _check_access(request: Request) -> None:
    """`access_control`: refuse client addresses outside allow_cidrs or inside deny_cidrs."""
    cfg = config.current()
    rules = cfg.access_control
    if not rules.allow_cidrs and not rules.deny_cidrs:
        return
    from common.http.clientip import client_ip, in_any

    address = client_ip(request, cfg)
    if in_any(address, rules.deny_cidrs) or (rules.allow_cidrs and not in_any(address, rules.allow_cidrs)):
        logs.warning("client address refused by access_control", client_ip=address)
        raise GatewayError(403, "Your network address may not use this gateway.", "permission_error")


def read_json_body(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, with 411/413/400 for what a client got wrong."""
    length_header = request.headers.get("Content-Length")
    if length_header is None:
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise GatewayError(411, "A Content-Length header is required; chunked request bodies are not accepted.")
        length = 0
    else:
        try:
            length = int(length_header)
        except ValueError:
            raise GatewayError(400, "Content-Length is not a number.") from None
    if length > max_bytes:
        raise GatewayError(
            413,
            f"Request body of {length} bytes exceeds the gateway's limit of {max_bytes} bytes (limits.max_request_bytes).",
            "request_too_large",
        )
    raw = request.get_data(cache=False)
    if len(raw) > max_bytes:
        raise GatewayError(413, f"Request body exceeds {max_bytes} bytes.", "request_too_large")
    if not raw:
        raise GatewayError(400, "The request body is empty; send a JSON object.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.")
    return body
