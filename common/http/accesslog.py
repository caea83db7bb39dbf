"""One access-log line per request, plain or streamed, with the same fields.

`status`, `latency_ms` (to the last byte for a stream), `bytes_sent`, and the
`upstream`/`model` a handler annotated the request with (`requestid.annotate`).
A plain response is logged when the handler returns; a streamed one when its
body ends (`completed`) or is closed early because the client went away
(`completed: false`), from inside the request's context. DEBUG, or WARNING for a 5xx: the line is for debugging, the 5xx for
alerting.
"""

from __future__ import annotations

import time

from flask import Request, Response

from common.core import logs
from common.http import requestid


def record(function: str, request: Request, response: Response, started: float) -> None:
    """Log `response`'s line now, or (streamed) arrange for it when the stream ends."""
    method, path, status = request.method, request.path, response.status_code

    def line(sent: int | None, **extra: object) -> None:
        logs.log(
            "WARNING" if status >= 500 else "DEBUG",
            "request",
            function=function,
            method=method,
            path=path,
            status=status,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            bytes_sent=sent,
            **requestid.annotated(),
            **extra,
        )

    if not response.is_streamed:
        line(response.calculate_content_length())
        return

    def ended(sent: int, completed: bool) -> None:
        line(sent, stream=True, completed=completed)

    response.response = requestid.InContext(response.response, ended)
