"""The HTTP server's own limits: request line, headers, and how slowly a request may arrive.

Every function runs under functions-framework's gunicorn application, which
sets `limit_request_line=0` (unbounded) and leaves reads without a timeout: a
client that sends one byte and stalls, or declares a body and never sends it,
holds one of the worker's threads for ever, unauthenticated. functions-framework
builds its `GunicornApplication` with no way to pass options (its CLI calls
`create_server(app, debug)`; `GUNICORN_CMD_ARGS` and `gunicorn.conf.py` are
read only by gunicorn's own `Application`, not by the `BaseApplication` it
subclasses), so `install()` replaces that class in functions-framework's module
with `BoundedGunicornApplication` before the server is built: `functions/*/main.py`
call it at import, which functions-framework does before `create_server`.
`gateway run` and `gateway serve` build the same class directly.

The limits (environment variables, for Terraform):

- request line at most `GATEWAY_LIMIT_REQUEST_LINE` bytes (8190; 414 beyond),
  at most `GATEWAY_LIMIT_REQUEST_FIELDS` header fields of at most
  `GATEWAY_LIMIT_REQUEST_FIELD_SIZE` bytes each (100 and 8190; 400/431 beyond);
- every read of a request (line, headers and body) must return within
  `GATEWAY_READ_TIMEOUT_SECONDS` (15), and the request as a whole must keep up
  an average of `GATEWAY_MIN_READ_BYTES_PER_SECOND` (4096) after that grace:
  a trickle of one byte every few seconds is cut as surely as a stall. A stall
  before the request's headers end is answered 408 and the connection closed;
  during the body, the body ends there (short of its Content-Length), the
  connection is not reused, and `http.bodies` answers the endpoint's own 408
  (`body_timed_out`).
"""

from __future__ import annotations

import os
import socket
import time
import weakref
from typing import Any

from gunicorn.http.errors import NoMoreData
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import gthread

DEFAULTS = {
    "GATEWAY_LIMIT_REQUEST_LINE": 8190,
    "GATEWAY_LIMIT_REQUEST_FIELDS": 100,
    "GATEWAY_LIMIT_REQUEST_FIELD_SIZE": 8190,
    "GATEWAY_READ_TIMEOUT_SECONDS": 15,
    "GATEWAY_MIN_READ_BYTES_PER_SECOND": 4096,
}

_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


# Sockets whose request body stopped arriving in time (weak: gone with the connection).
_EXPIRED: weakref.WeakSet[socket.socket] = weakref.WeakSet()


def body_timed_out(sock: object) -> bool:
    """Whether the body on `sock` (the WSGI environ's `gunicorn.socket`) was cut for arriving too slowly."""
    try:
        return sock in _EXPIRED
    except TypeError:
        return False


def setting(name: str) -> int:
    """A limit from the environment, its default when unset or not a positive number."""
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULTS[name]


def options() -> dict[str, Any]:
    """The gunicorn settings every function's server runs with."""
    return {
        "limit_request_line": setting("GATEWAY_LIMIT_REQUEST_LINE"),
        "limit_request_fields": setting("GATEWAY_LIMIT_REQUEST_FIELDS"),
        "limit_request_field_size": setting("GATEWAY_LIMIT_REQUEST_FIELD_SIZE"),
        "worker_class": BoundedThreadWorker,
    }


class _Budget:
    """How long the current request may still take to arrive: a grace plus its bytes at the minimum rate."""

    def __init__(self) -> None:
        self.idle = float(setting("GATEWAY_READ_TIMEOUT_SECONDS"))
        self.rate = float(setting("GATEWAY_MIN_READ_BYTES_PER_SECOND"))
        self.start()

    def start(self) -> None:
        self.began = time.monotonic()
        self.received = 0
        self.in_body = False

    def timeout(self) -> float:
        remaining = self.began + self.idle + self.received / self.rate - time.monotonic()
        return min(self.idle, remaining)


class _BoundedUnreader(SocketUnreader):  # type: ignore[misc]
    """gunicorn's socket reader, each recv() bounded by the request's budget."""

    def __init__(self, sock: socket.socket, budget: _Budget, max_chunk: int = 8192) -> None:
        super().__init__(sock, max_chunk)
        self.budget = budget

    def chunk(self, size_hint: int | None = None) -> bytes:
        timeout = self.budget.timeout()
        prior = self.sock.gettimeout()  # gunicorn's own drain sets one
        if prior is not None:
            timeout = min(timeout, prior)
        try:
            if timeout <= 0:
                raise TimeoutError
            self.sock.settimeout(timeout)
            data: bytes = super().chunk(size_hint)
        except TimeoutError:
            if self.budget.in_body:
                # End the body here rather than raise: functions-framework reads what is left
                # after our response (outside any handler of ours), and an exception there is a
                # 500. No more bytes are taken from this connection, so it is not reused.
                _EXPIRED.add(self.sock)
                try:
                    self.sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
                return b""
            # Before the app runs nobody else can answer: say 408, then close quietly.
            try:
                self.sock.settimeout(1.0)
                self.sock.sendall(_TIMEOUT_408)
            except OSError:
                pass
            raise NoMoreData(b"") from None
        finally:
            # Writes keep the socket as gunicorn left it (blocking): a streamed reply may pause for minutes.
            try:
                self.sock.settimeout(prior)
            except OSError:
                pass
        self.budget.received += len(data)
        return data


class _BoundedConn(gthread.TConn):  # type: ignore[misc]
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.budget = _Budget()

    def init(self) -> None:
        super().init()
        parser: Any = self.parser
        unreader: Any = getattr(parser, "unreader", None)
        if type(unreader) is SocketUnreader:
            parser.unreader = _BoundedUnreader(unreader.sock, self.budget, unreader.mxchunk)


class BoundedThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker whose connections read within `_Budget`."""

    def accept(self, listener: socket.socket) -> None:
        # As ThreadWorker.accept, with the bounded connection class.
        try:
            client_sock, client_addr = listener.accept()
            self.nr_conns += 1
            client_sock.setblocking(True)
            self.enqueue_req(_BoundedConn(self.cfg, client_sock, client_addr, listener.getsockname()))
        except OSError as exc:
            if exc.errno not in (gthread.errno.EAGAIN, gthread.errno.ECONNABORTED, gthread.errno.EWOULDBLOCK):
                raise

    def handle(self, conn: Any) -> Any:
        budget = getattr(conn, "budget", None)
        if budget is not None:
            budget.start()  # a new request on this connection (or its first): a fresh budget
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        # From here to the end of this request (the app, then gunicorn's drain of an unread
        # body) a timeout is the reader's to report: no 408 after a response was sent.
        budget = getattr(conn, "budget", None)
        if budget is not None:
            budget.in_body = True
        return super().handle_request(req, conn)


def install() -> None:
    """Make functions-framework's server (the production entry point) run with `options()`."""
    from functions_framework._http import gunicorn as ff_gunicorn

    if not issubclass(ff_gunicorn.GunicornApplication, BoundedGunicornApplication):
        ff_gunicorn.GunicornApplication = BoundedGunicornApplication  # type: ignore[misc]


def _base() -> type:
    from functions_framework._http.gunicorn import GunicornApplication

    return GunicornApplication


class BoundedGunicornApplication(_base()):  # type: ignore[misc]
    """functions-framework's gunicorn application with the gateway's limits on top of its settings."""

    def load_config(self) -> None:
        super().load_config()
        for key, value in options().items():
            self.cfg.set(key, value)
