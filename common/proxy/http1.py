"""The upstream hot path's HTTP/1.1 client: h11 for the protocol, our own pool, sockets and timeouts.

HTTP/1.1 message framing and parsing (request serialisation, status line,
headers, interim 1xx responses, `Content-Length` and close-delimited bodies,
and whether a connection may carry another request) is `h11`'s, the sans-IO
HTTP/1.1 library of python-hyper: a well-kept, strictly validating
implementation rather than a hand-written parser. The one exception is the
chunked transfer coding of a response body (`_Dechunker`, RFC 9112 §7.1,
strict): it runs once per streamed event, where h11's chunk reader cost
~25 µs a chunk against ~3-5 µs, about 1 CPU-ms of a real Claude Code
request's ~8 (47 events). What h11 leaves to its user
is what this module keeps: per-origin pools of keep-alive connections, raw
sockets (TLS through the `ssl` module's defaults: system CA store, hostname
checked), connect / first-byte / read timeouts.

Cost (`python -m bench.http1_client`, one thread, small POST round trip to
the upstream stand-in, CPU per request): urllib3 ~300 µs (an earlier
measurement, same method: URL parsing, pool
keys, `http.client`'s email-based header parser, retries bookkeeping), which
google-auth still uses here for token refreshes; this client ~150-190 µs with
h11; the hand-written parser it replaced ~60-70 µs. h11's share (validating
every header, a state machine per event) is ~100 µs of the gateway's
~2.3 CPU-ms per request: bought for a parser we do not maintain.

Reads go straight to `sock.recv` (no `makefile`) and are fed to h11, which
keeps every byte it has not yet turned into an event. A read timeout
therefore loses nothing and is recoverable: a stream waits `ping_interval` of
silence, the relay writes a ping, and reading the same response resumes in the
same thread. The body is relayed as raw bytes (no content decoding): as soon as
a read completes an HTTP chunk, every complete chunk at hand as one item (or
whatever bytes a read returns, without chunked framing).

Connection reuse: a connection goes back to the pool only when h11 says both
sides are `DONE` with nothing unread; an idle connection is checked for
readability before reuse (an upstream that closed it shows EOF); a request
whose send fails, or that gets EOF before any response byte, on a *reused*
connection is sent once more on a fresh one: the upstream closed it while idle
and has not seen the request. Any other failure is raised and the connection
discarded.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Generator
from typing import Any
from urllib.parse import urlsplit

import h11

# Largest response head (status line and headers) accepted.
_MAX_HEAD = 65536
# Bytes h11 refuses in a request target (anything but visible ASCII): percent-encoded.
_UNSAFE_TARGET = re.compile(rb"[^\x21-\x7e]")


class UpstreamHTTPError(Exception):
    """Transport failure talking to an upstream."""


class ConnectFailed(UpstreamHTTPError):
    pass


class ConnectTimeout(UpstreamHTTPError):
    pass


class ResponseTimeout(UpstreamHTTPError):
    pass


class ProtocolError(UpstreamHTTPError):
    pass


class _Eof(Exception):
    """The upstream closed the connection before sending any byte of the response."""


class _Conn:
    """A socket and the h11 state of the exchange on it."""

    __slots__ = ("fresh", "h11", "last_byte", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.last_byte = 0.0
        self.fresh = True  # no byte received since the request was sent

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def dropped(self) -> bool:
        """An idle connection that is readable was closed (EOF) or is out of step: do not reuse it."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def next_event(self) -> Any:
        """h11's next event, reading the socket when it needs data.

        A socket timeout (`TimeoutError`) or `OSError` propagates; h11 keeps
        what it has buffered, so calling again after a timeout simply goes on.
        """
        conn = self.h11
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = self.sock.recv(65536)
            if data:
                self.fresh = False
                self.last_byte = time.monotonic()
            elif self.fresh:
                raise _Eof
            conn.receive_data(data)  # b"": EOF, which h11 turns into an end or an error


# A chunk-size line: 1-16 hex digits, then optional chunk extensions (ignored), as h11 reads it.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")


class _Dechunker:
    """Chunked transfer coding (RFC 9112 §7.1) of a streamed response body, incrementally.

    The one part of HTTP/1.1 this module parses itself, because it runs once
    per streamed event: h11's chunk reader costs ~25 µs a chunk (its state
    machine and event objects), this ~3 µs. h11 still parses the response head,
    every other body framing and every message of a plain reply. `feed` takes
    bytes as read; `take` returns the data of every complete chunk (each chunk
    whole, never a part of one); `done` once the last chunk and its trailer
    section ended; `rest` is what the upstream sent past the end (then the
    connection is out of step). Bad framing raises `ProtocolError`.
    """

    __slots__ = ("_buf", "_size", "done")

    def __init__(self, initial: bytes) -> None:
        self._buf = bytearray(initial)
        self._size = -1  # the data size of the chunk being read; -1: its size line is next; -2: trailers
        self.done = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def rest(self) -> bytes:
        return bytes(self._buf)

    def take(self) -> list[bytes]:
        out: list[bytes] = []
        buf = self._buf
        start = 0
        while not self.done:
            if self._size >= 0:  # a chunk's data and its CRLF
                end = start + self._size
                if len(buf) < end + 2:
                    break
                if buf[end : end + 2] != b"\r\n":
                    raise ProtocolError("bad response body: no CRLF after a chunk's data")
                out.append(bytes(buf[start:end]))
                start = end + 2
                self._size = -1
                continue
            eol = buf.find(b"\r\n", start)
            if eol < 0:
                if len(buf) - start > _MAX_HEAD:
                    raise ProtocolError("bad response body: a chunk-size or trailer line too long")
                break
            line = bytes(buf[start:eol])
            start = eol + 2
            if self._size == -2:  # the trailer section: fields (not relayed) until an empty line
                if not line:
                    self.done = True
                elif b":" not in line:
                    raise ProtocolError("bad response body: a malformed trailer field")
                continue
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise ProtocolError("bad response body: a malformed chunk-size line")
            self._size = int(match.group(1), 16) or -2  # the last chunk (size 0): the trailers follow
        if start:
            del buf[:start]
        return out


class Response:
    """Status, headers, and the body as raw bytes (whole or chunk by chunk)."""

    __slots__ = ("_chunked", "_conn", "_done", "_keep_alive", "_pool", "header_list", "headers", "status")

    def __init__(self, pool: Pool, conn: _Conn, event: h11.Response) -> None:
        self._pool = pool
        self._conn: _Conn | None = conn
        self._done = False
        self.status = event.status_code
        header_list: list[tuple[str, str]] = []
        headers: dict[str, str] = {}
        for raw_name, raw_value in event.headers.raw_items():
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            header_list.append((name, value))
            lower = name.lower()
            headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
        self.header_list = header_list
        self.headers = headers
        # h11 accepted the head, so a Transfer-Encoding is exactly `chunked`; 204 and 304 have no body.
        self._chunked = "transfer-encoding" in headers and self.status not in (204, 304)
        # Whether the connection may carry another request after a chunked body (h11's rule for the rest).
        self._keep_alive = event.http_version == b"1.1" and "close" not in headers.get("connection", "").lower()

    def iter_chunks(
        self, idle_seconds: float | None = None, silence_seconds: float = 600.0
    ) -> Generator[bytes, None, None]:
        """The body as it arrives: whatever complete HTTP chunks (or bytes) are at hand, as one item.

        Each item is every complete chunk parsed from the bytes already read,
        joined: several events per item when they arrived together (a busy
        instance reads late), one when they come one by one. It never waits for
        more bytes while it holds a complete chunk, so joining adds no delay; it
        spares the relay a pass and the server a write per event. An incomplete
        chunk is held back until it completes (relayed whole, as the upstream wrote it).
        A chunked body is decoded by `_Dechunker`, any other by h11.

        With `idle_seconds`, an empty `b""` is yielded whenever that long passes
        without a byte (the caller may write a ping), and more than
        `silence_seconds` without a byte ends the body with `ResponseTimeout`.
        """
        conn = self._conn
        if conn is None or self._done:
            return
        if idle_seconds is not None:
            conn.sock.settimeout(min(idle_seconds, silence_seconds))
        conn.last_byte = time.monotonic()
        dechunker = _Dechunker(conn.h11.trailing_data[0]) if self._chunked else None  # h11 read past the head
        try:
            if dechunker is None:
                yield from self._h11_items(conn, idle_seconds, silence_seconds)
            else:
                yield from self._dechunked_items(conn, dechunker, idle_seconds, silence_seconds)
        except TimeoutError:
            self.close()
            raise ResponseTimeout("the upstream went silent for longer than the read timeout") from None
        except h11.ProtocolError as exc:  # h11 raises Local- or RemoteProtocolError on bad framing or early EOF
            self.close()
            raise ProtocolError(f"bad response body: {exc}") from None
        except OSError as exc:
            self.close()
            raise ProtocolError(f"{type(exc).__name__}: {exc}") from None
        except ProtocolError:
            self.close()
            raise
        except GeneratorExit:
            self.close()  # abandoned mid-body: the connection is out of step
            raise
        self._done = True
        if dechunker is None:
            self.release()
            return
        self._conn = None
        if dechunker.rest or not self._keep_alive:  # bytes past the body (out of step), or the upstream closes
            conn.close()
            return
        conn.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)  # the next exchange's
        conn.fresh = True
        self._pool.put(conn)

    @staticmethod
    def _h11_items(conn: _Conn, idle_seconds: float | None, silence_seconds: float) -> Generator[bytes, None, None]:
        """`iter_chunks`' items parsed by h11 (raw errors: `iter_chunks` maps them)."""
        state = conn.h11
        ready: list[bytes] = []  # complete chunks (or plain body bytes) not yet handed out
        pieces: list[bytes] = []  # the start of an HTTP chunk that has not fully arrived
        while True:
            if ready:
                try:
                    event: Any = state.next_event()  # only what is already buffered: never reads
                except h11.ProtocolError:
                    event = h11.NEED_DATA  # hand out what came before; h11 raises it again next read
                if event is h11.NEED_DATA:
                    yield ready[0] if len(ready) == 1 else b"".join(ready)
                    ready = []
                    continue
            else:
                try:
                    event = conn.next_event()
                except TimeoutError:
                    if idle_seconds is None or time.monotonic() - conn.last_byte >= silence_seconds:
                        raise
                    yield b""  # silence: h11 kept every byte, reading simply goes on
                    continue
            kind = type(event)
            if kind is h11.Data:
                data = bytes(event.data)  # h11 hands out bytearrays; WSGI wants bytes
                if event.chunk_end:
                    if pieces:
                        pieces.append(data)
                        data = b"".join(pieces)
                        pieces = []
                    ready.append(data)
                elif pieces or event.chunk_start:
                    pieces.append(data)  # part of a chunk: relayed whole, like the upstream wrote it
                elif data:
                    ready.append(data)  # Content-Length or close-delimited body: bytes as they come
            elif kind is h11.EndOfMessage:
                if ready:
                    yield b"".join(ready)
                return
            else:
                raise ProtocolError(f"unexpected {kind.__name__} in a response body")

    @staticmethod
    def _dechunked_items(
        conn: _Conn, body: _Dechunker, idle_seconds: float | None, silence_seconds: float
    ) -> Generator[bytes, None, None]:
        """`iter_chunks`' items of a chunked body, decoded by `_Dechunker` (raw errors, as `_h11_items`)."""
        sock = conn.sock
        while True:
            ready = body.take()
            if ready:
                yield ready[0] if len(ready) == 1 else b"".join(ready)
            if body.done:
                return
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if idle_seconds is None or time.monotonic() - conn.last_byte >= silence_seconds:
                    raise
                yield b""  # silence: the decoder kept every byte, reading simply goes on
                continue
            if not data:
                raise ProtocolError("bad response body: the upstream closed the connection mid-body")
            conn.last_byte = time.monotonic()
            body.feed(data)

    def read(self, limit: int | None = None) -> bytes:
        """The whole body (at most `limit` bytes; the connection is then discarded)."""
        parts: list[bytes] = []
        total = 0
        chunks = self.iter_chunks()
        for chunk in chunks:
            parts.append(chunk)
            total += len(chunk)
            if limit is not None and total >= limit:
                chunks.close()
                self.close()
                break
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back to the pool (when h11 allows another request on it) or close it."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        state = conn.h11
        if (
            self._done
            and state.our_state is h11.DONE
            and state.their_state is h11.DONE
            and not state.trailing_data[0]  # bytes past the response: out of step
        ):
            state.start_next_cycle()
            conn.fresh = True
            self._pool.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Abandon the response: the connection is closed, never reused."""
        conn = self._conn
        self._conn = None
        if conn is not None:
            conn.close()


class Pool:
    """Idle keep-alive connections to one scheme://host:port (LIFO: the warmest first)."""

    def __init__(self, scheme: str, host: str, port: int, maxsize: int) -> None:
        self.host = host
        self.port = port
        self.maxsize = maxsize
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = ssl.create_default_context() if scheme == "https" else None
        default = 443 if scheme == "https" else 80
        try:
            self._host_header = (host if port == default else f"{host}:{port}").encode("idna")
        except UnicodeError:
            raise ConnectFailed(f"not a valid host name: {host!r}") from None

    def _take(self) -> _Conn | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if not conn.dropped():
                return conn
            conn.close()

    def put(self, conn: _Conn) -> None:
        with self._lock:
            if len(self._idle) < self.maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self, timeout: float) -> _Conn:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except TimeoutError:
            raise ConnectTimeout(f"connecting to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            except TimeoutError:
                sock.close()
                raise ConnectTimeout(f"TLS handshake with {self.host} timed out") from None
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise ConnectFailed(f"TLS handshake with {self.host} failed: {exc}") from None
        return _Conn(sock)

    def _request_event(self, method: str, target: str, headers: dict[str, str], body: bytes) -> h11.Request:
        fields = [(b"Host", self._host_header)]
        fields += [
            (name.encode("latin-1", "replace"), value.encode("latin-1", "replace")) for name, value in headers.items()
        ]
        fields.append((b"Content-Length", str(len(body)).encode()))
        raw_target = target.encode("latin-1", "replace")
        try:
            return h11.Request(method=method, target=raw_target, headers=fields)
        except h11.LocalProtocolError:
            pass
        # h11 refused something the client sent us (a control character, which could
        # split the request; surrounding blanks; a raw byte in the query string):
        # drop the headers h11 refuses, and percent-encode the target, rather than fail.
        fields = [fields[0]] + [
            field for field in ((name, value.strip()) for name, value in fields[1:]) if _acceptable(field)
        ]
        raw_target = _UNSAFE_TARGET.sub(lambda match: b"%%%02X" % match.group()[0], raw_target)
        try:
            return h11.Request(method=method, target=raw_target, headers=fields)
        except h11.LocalProtocolError as exc:
            raise ProtocolError(f"cannot send this request: {exc}") from None

    def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        connect_timeout: float,
        response_timeout: float,
    ) -> Response:
        event = self._request_event(method, target, headers, body)
        message = h11.Data(data=body)
        end = h11.EndOfMessage()
        for attempt in (0, 1):
            conn = self._take() if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = self._connect(connect_timeout)
            try:
                state = conn.h11
                payload = state.send(event)
                if body:
                    payload += state.send(message)
                state.send(end)  # Content-Length framing: nothing more to write
                conn.sock.settimeout(response_timeout)
                conn.sock.sendall(payload)
                while True:
                    try:
                        head = conn.next_event()
                    except _Eof:
                        raise ConnectionResetError("closed before any response byte") from None
                    if type(head) is h11.Response:
                        return Response(self, conn, head)
                    if type(head) is not h11.InformationalResponse:  # a 1xx: the real response follows
                        raise ProtocolError(f"unexpected {type(head).__name__} instead of a response")
            except TimeoutError:
                conn.close()
                raise ResponseTimeout("the upstream did not answer within the timeout") from None
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
                conn.close()
                if reused:
                    continue  # closed while idle: the upstream has not seen this request
                raise ProtocolError(f"{type(exc).__name__}: {exc}") from None
            except OSError as exc:
                conn.close()
                raise ProtocolError(f"{type(exc).__name__}: {exc}") from None
            except h11.ProtocolError as exc:
                conn.close()
                raise ProtocolError(f"bad response head: {exc}") from None
            except ProtocolError:
                conn.close()
                raise
        raise ProtocolError("unreachable")  # pragma: no cover


def _acceptable(field: tuple[bytes, bytes]) -> bool:
    """Whether h11 accepts this header field (asked of h11 itself, off the hot path)."""
    try:
        h11.Request(method="POST", target=b"/", headers=[(b"Host", b"h"), field])
    except h11.LocalProtocolError:
        return False
    return True


class Client:
    """Pools by origin, shared by every upstream of the instance."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._pools: dict[str, tuple[Pool, str]] = {}
        self._lock = threading.Lock()

    def _pool(self, url: str) -> tuple[Pool, str]:
        """(pool, request target) for an absolute URL; origins are cached by URL prefix."""
        scheme_end = url.find("://")
        slash = url.find("/", scheme_end + 3) if scheme_end >= 0 else -1
        origin = url if slash < 0 else url[:slash]
        hit = self._pools.get(origin)
        if hit is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConnectFailed(f"not an http(s) URL: {origin}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            with self._lock:
                hit = self._pools.get(origin)
                if hit is None:
                    hit = (Pool(parts.scheme, parts.hostname, port, self.maxsize), origin)
                    self._pools[origin] = hit
        target = url[len(origin) :] or "/"
        return hit[0], target

    def post(
        self, url: str, headers: dict[str, str], body: bytes, connect_timeout: float, response_timeout: float
    ) -> Response:
        pool, target = self._pool(url)
        return pool.request("POST", target, headers, body, connect_timeout, response_timeout)


def describe(exc: Any) -> str:
    return f"{type(exc).__name__}: {exc}"
