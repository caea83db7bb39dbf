"""Exceptions to responses: a registry of handlers keyed by exception class.

An exception is rendered by the handler registered for the nearest class in its
MRO, so a subclass inherits its base's rendering unless it registers its own.
`standard()` is the registry every function uses: `GatewayError` in Anthropic's
envelope (in the OAuth shape on the function's OAuth paths), `OAuthError` in
the OAuth shape with `no-store`, `ConfigError` and `DatabaseUnavailable` as
operator faults, and anything else as a 500 `api_error` whose stack trace goes
to the log, never to the client.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Request, Response

from common.config import ConfigError
from common.core import logs
from common.core.errors import GatewayError, OAuthError, envelope
from common.db.pool import DatabaseUnavailable
from common.http.responses import JSON, NO_STORE

E = TypeVar("E", bound=BaseException)
Handler = Callable[[Any, Request], Response]


class ErrorHandlers:
    """Exception class -> handler; `render` picks the handler by the exception's MRO."""

    def __init__(self) -> None:
        self._handlers: dict[type[BaseException], Handler] = {}

    def register(
        self, exc_type: type[E]
    ) -> Callable[[Callable[[E, Request], Response]], Callable[[E, Request], Response]]:
        def add(handler: Callable[[E, Request], Response]) -> Callable[[E, Request], Response]:
            self._handlers[exc_type] = handler
            return handler

        return add

    def resolve(self, exc_type: type[BaseException]) -> Handler | None:
        """The handler of the nearest registered class in `exc_type`'s MRO, if any."""
        for klass in exc_type.__mro__:
            handler = self._handlers.get(klass)
            if handler is not None:
                return handler
        return None

    def render(self, exc: BaseException, request: Request) -> Response:
        handler = self.resolve(type(exc))
        if handler is None:  # nothing registered for Exception: keep the exception visible
            raise exc
        return handler(exc, request)


def standard(oauth_paths: Iterable[str] = ()) -> ErrorHandlers:
    """The gateway's rendering of every error; `oauth_paths` answer even GatewayErrors in the OAuth shape."""
    oauth = frozenset(oauth_paths)
    handlers = ErrorHandlers()

    @handlers.register(GatewayError)
    def gateway_error(exc: GatewayError, request: Request) -> Response:
        if request.path.rstrip("/") in oauth:  # OAuth endpoints answer in the OAuth shape
            return oauth_error(
                OAuthError("invalid_request", exc.message, status=exc.status, headers=exc.headers), request
            )
        return Response(exc.body(), status=exc.status, headers=exc.headers, content_type=JSON)

    @handlers.register(OAuthError)
    def oauth_error(exc: OAuthError, request: Request) -> Response:
        return Response(exc.body(), status=exc.status, headers={**NO_STORE, **exc.headers}, content_type=JSON)

    @handlers.register(ConfigError)
    def config_error(exc: ConfigError, request: Request) -> Response:
        logs.error("gateway.yaml is invalid", problems=exc.problems)
        return Response(
            envelope("api_error", "The gateway is misconfigured; an operator must fix gateway.yaml (see logs)."),
            status=500,
            content_type=JSON,
        )

    @handlers.register(DatabaseUnavailable)
    def database_unavailable(exc: DatabaseUnavailable, request: Request) -> Response:
        logs.error("database unavailable", error=str(exc))
        return Response(
            envelope("api_error", "The gateway's database is unavailable; try again shortly."),
            status=503,
            headers={"retry-after": "5"},
            content_type=JSON,
        )

    @handlers.register(Exception)
    def unexpected(exc: Exception, request: Request) -> Response:
        logs.error(
            "unhandled error",
            error_type=type(exc).__name__,
            trace="".join(traceback.format_exception(exc)[-8:]),
        )
        return Response(envelope("api_error", "Internal error in the gateway."), status=500, content_type=JSON)

    return handlers
