"""A function's route table: `App(request)` is the functions-framework target.

functions-framework hands each function every path and method as a
`flask.Request`. Per request, an `App` opens the request's context (its id,
see `requestid`), answers the health probes, applies `access_control`, maps
(path, method) to a handler (OPTIONS, 405 and 404 for what no route takes),
renders exceptions through its `ErrorHandlers`, stamps `request-id` on the
response and writes the access-log line (`accesslog`). Handlers return
`flask.Response` objects, streaming ones included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import Request, Response

from common import config, paths
from common.core.errors import GatewayError
from common.http import access, accesslog, errors, health, requestid

Handler = Callable[[Request], Response]


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
        self.errors = errors.standard(oauth_paths)

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
        request_id = requestid.new_request_id()
        started = time.perf_counter()
        with requestid.scope(request_id):
            try:
                response = self._dispatch(request)
            except Exception as exc:
                response = self.errors.render(exc, request)
            response.headers["request-id"] = request_id
            response.headers["x-gateway-function"] = self.name
            # Inside the scope: a streamed body is wrapped in a copy of this context.
            accesslog.record(self.name, request, response, started)
        return response

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        kind = paths.health_kind(path)
        if kind is not None and not self._match(path):
            return health.respond(kind, self.name)
        access.check(request, config.current())
        routes = self._match(path)
        if not routes:
            raise GatewayError(404, f"No such endpoint: {request.method} {path}", "not_found_error")
        for route in routes:
            if request.method in route.methods:
                return route.handler(request)
        allow = ", ".join(sorted(routes[0].methods))
        if request.method == "OPTIONS":
            return Response(status=204, headers={"Allow": allow})
        raise GatewayError(405, f"{request.method} is not allowed on {path}; use {allow}", headers={"Allow": allow})
