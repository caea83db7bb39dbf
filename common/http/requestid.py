"""The request's context: its id (on every log line) and what handlers annotate it with.

Both live in contextvars set for one request by `scope()`. A streamed body is
iterated by the WSGI server after the handler returned and the scope ended;
`InContext` runs that iteration (and its `close()`) inside a copy of the
request's context, so log lines written while a stream is relayed, drained or
settled still carry the request id, and annotations made then still count.
"""

from __future__ import annotations

import contextvars
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from common.core import logs

# A fresh dict per request (set by `scope`); `annotate` replaces it, never mutates it,
# so a copied context sees its own values.
_annotations: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("request_annotations")


def new_request_id() -> str:
    return "req_gw" + secrets.token_hex(12)


@contextmanager
def scope(request_id: str) -> Iterator[None]:
    """Within: log lines carry `request_id` and annotations start empty; both restored after."""
    id_token = logs.set_request_id(request_id)
    annotations_token = _annotations.set({})
    try:
        yield
    finally:
        _annotations.reset(annotations_token)
        logs.reset_request_id(id_token)


def annotate(*, upstream: str | None = None, model: str | None = None) -> None:
    """Facts for the current request's access-log line (only these: nothing a client wrote verbatim)."""
    added = {k: v for k, v in (("upstream", upstream), ("model", model)) if v is not None}
    if added:
        _annotations.set({**_annotations.get({}), **added})


def annotated() -> dict[str, str]:
    """What handlers annotated the current request with."""
    return dict(_annotations.get({}))


class InContext:
    """A response body iterated, and closed, inside a copy of the context it was created in.

    `on_end(sent_bytes, completed)` runs once in that context: when the body is
    exhausted or raises (`completed` True/False), or at `close()` if it did not
    end before (the client went away: `completed` False), after the body's own
    `close()`.
    """

    def __init__(self, body: Iterable[bytes] | Iterable[str], on_end: Callable[[int, bool], None]) -> None:
        self._context = contextvars.copy_context()
        self._body = body
        self._iterator: Iterator[bytes | str] = iter(body)
        self._on_end = on_end
        self._sent = 0
        self._ended = False

    def __iter__(self) -> InContext:
        return self

    def __next__(self) -> bytes:
        try:
            chunk = self._context.run(next, self._iterator)
        except StopIteration:
            self._end(True)
            raise
        except BaseException:
            self._end(False)
            raise
        data = chunk.encode() if isinstance(chunk, str) else chunk  # as werkzeug would encode it
        self._sent += len(data)
        return data

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                self._context.run(close)
        finally:
            self._end(False)

    def _end(self, completed: bool) -> None:
        if self._ended:
            return
        self._ended = True
        self._context.run(self._on_end, self._sent, completed)
