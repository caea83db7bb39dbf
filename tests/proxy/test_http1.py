"""The upstream HTTP/1.1 client (h11 framing, our pool) against scripted raw-socket servers.

Each server here writes exact bytes, so the tests pin what the relay relies
on: keep-alive reuse only when the exchange is cleanly done, every body
framing, interim responses, truncation errors, and no resend once the upstream
has answered anything.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.proxy import http1

Answer = Callable[[int, bytes, bytes], "bytes | tuple[bytes, bool] | None"]


def _read_request(conn: socket.socket, pending: bytearray) -> tuple[bytes, bytes] | None:
    """(head, body) of the next request on `conn` (Content-Length framed), None at EOF."""
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            return None
        rest += data
    pending[:] = rest[length:]
    return head, rest[:length]


class Server:
    """Accepts connections; `answer(n, head, body)` gives the bytes for the n-th request.

    The connection is closed after the reply when `answer` returns `(bytes, True)`,
    with `close_after`, or when the reply says so; `None` closes it without a reply.
    """

    def __init__(self, answer: Answer, close_after: bool = False, tls: ssl.SSLContext | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/v1/messages"
        self.tls = tls
        self.answer = answer
        self.close_after = close_after
        self.accepted = 0
        self.requests: list[tuple[bytes, bytes]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        pending = bytearray()
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                conn.close()  # the client refused our certificate
                return
        with conn:
            while True:
                request = _read_request(conn, pending)
                if request is None:
                    return
                self.requests.append(request)
                reply = self.answer(len(self.requests) - 1, *request)
                if reply is None:
                    return
                close = self.close_after
                if isinstance(reply, tuple):
                    reply, close = reply
                for part in reply.split(b"<pause>"):
                    if not part:
                        time.sleep(0.35)
                    conn.sendall(part)
                if close or b"connection: close" in reply.lower() or reply.startswith(b"HTTP/1.0"):
                    return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(answer: Answer, close_after: bool = False, tls: ssl.SSLContext | None = None) -> Server:
        server = Server(answer, close_after, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_keep_alive_carries_every_body_framing_on_one_connection(serve: Callable[..., Server]) -> None:
    replies = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kind: length\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nevent1\r\n6\r\nevent2\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
    ]
    server = serve(lambda n, head, body: replies[n])
    client = http1.Client(maxsize=2)
    first = client.post(server.url, {"content-type": "application/json"}, b'{"a":1}', 2, 2)
    assert (first.status, first.headers["x-kind"], first.read()) == (200, "length", b"hello")
    assert ("X-Kind", "length") in first.header_list  # the upstream's casing is kept for the relay
    second = client.post(server.url, {}, b"{}", 2, 2)
    assert list(second.iter_chunks()) == [b"event1event2"]  # the chunks read together, as one item
    assert client.post(server.url, {}, b"", 2, 2).read() == b""
    assert client.post(server.url, {}, b"x", 2, 2).read() == b""
    assert server.accepted == 1
    head, body = server.requests[0]
    assert head.startswith(b"POST /v1/messages HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}".encode() in head.split(b"\r\n")
    assert b"Content-Length: 7" in head.split(b"\r\n") and body == b'{"a":1}'


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",  # close-delimited body
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nuntil the end",
        b"HTTP/1.0 200 OK\r\nContent-Length: 13\r\n\r\nuntil the end",
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nuntil the endEXTRA",  # bytes past the response
    ],
)
def test_a_connection_is_reused_only_after_a_clean_exchange(serve: Callable[..., Server], reply: bytes) -> None:
    server = serve(lambda n, head, body: reply)
    client = http1.Client(maxsize=2)
    for _ in range(2):
        assert client.post(server.url, {}, b"{}", 2, 2).read() == b"until the end"
    assert server.accepted == 2


def test_interim_responses_are_skipped(serve: Callable[..., Server]) -> None:
    server = serve(
        lambda n, head, body: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    )
    response = http1.Client(maxsize=1).post(server.url, {}, b"{}", 2, 2)
    assert (response.status, response.read()) == (201, b"ok")


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwo",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",  # bad chunk size
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",  # bad chunk end
    ],
)
def test_a_broken_body_is_an_error(serve: Callable[..., Server], reply: bytes) -> None:
    server = serve(lambda n, head, body: reply, close_after=True)
    response = http1.Client(maxsize=1).post(server.url, {}, b"{}", 2, 2)
    with pytest.raises(http1.ProtocolError):
        response.read()


@pytest.mark.parametrize("head", [b"HTTP/1.1 2", b"NOT HTTP\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"])
def test_no_resend_once_the_upstream_answered_anything(serve: Callable[..., Server], head: bytes) -> None:
    # The first exchange leaves a pooled connection; the second breaks after a response byte:
    # the upstream has seen (and may be billing) that request, so it is not sent again.
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server = serve(lambda n, h, b: ok if n == 0 else (head, True))  # then the upstream closes
    client = http1.Client(maxsize=1)
    assert client.post(server.url, {}, b"{}", 2, 2).read() == b"ok"
    with pytest.raises(http1.ProtocolError):
        client.post(server.url, {}, b'{"second":1}', 2, 0.5)
    assert [body for _, body in server.requests] == [b"{}", b'{"second":1}']
    assert server.accepted == 1


def test_what_h11_refuses_to_send_is_dropped_or_encoded(serve: Callable[..., Server]) -> None:
    server = serve(lambda n, head, body: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    headers = {"x-good": " kept ", "x-bad": "v\r\nInjected: 1", "x-nul": "a\x00b", "bad name": "v"}
    http1.Client(maxsize=1).post(server.url.replace("/v1/messages", "/p?q=a b\xe9"), headers, b"{}", 2, 2).read()
    lines = server.requests[0][0].split(b"\r\n")
    assert lines[0] == b"POST /p?q=a%20b%E9 HTTP/1.1"
    assert b"x-good: kept" in lines and len(lines) == 4  # request line, Host, x-good, Content-Length
    assert not [line for line in lines if line.lower().startswith((b"injected", b"x-bad", b"x-nul"))]


def test_a_fresh_connection_closed_before_any_byte_is_not_resent(serve: Callable[..., Server]) -> None:
    # Only a *reused* connection may have been closed while idle; on a fresh one the
    # upstream did see the request, so it is an error and is not sent twice.
    server = serve(lambda n, head, body: None)
    with pytest.raises(http1.ProtocolError):
        http1.Client(maxsize=1).post(server.url, {}, b"{}", 2, 2)
    assert len(server.requests) == 1 and server.accepted == 1


def _tls_server(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and that certificate."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    return tls, cert


def test_tls_keep_alive_and_a_recoverable_silence(
    serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls, cert = _tls_server(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted through the default verify paths
    stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nev1\n\r\n<pause><pause>4\r\nev2\n\r\n0\r\n\r\n"
    server = serve(lambda n, head, body: stream, tls=tls)
    client = http1.Client(maxsize=1)
    got = list(client.post(server.url, {}, b"{}", 2, 2).iter_chunks(idle_seconds=0.1, silence_seconds=5))
    assert [c for c in got if c] == [b"ev1\n", b"ev2\n"] and b"" in got  # silence reported, then resumed
    assert client.post(server.url, {}, b"{}", 2, 2).read() == b"ev1\nev2\n"
    assert server.accepted == 1


def test_tls_refuses_an_untrusted_certificate(serve: Callable[..., Server], tmp_path: Path) -> None:
    tls, _ = _tls_server(tmp_path)  # a certificate nobody trusts
    server = serve(lambda n, head, body: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", tls=tls)
    with pytest.raises(http1.ConnectFailed):
        http1.Client(maxsize=1).post(server.url, {}, b"{}", 2, 2)


def test_http1_client_replaces_a_connection_the_upstream_closed_while_idle() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        for _ in range(3):
            conn, _ = listener.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            while len(rest) < length:
                rest += conn.recv(65536)
            seen.append(rest)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: 1\r\n\r\nok")
            conn.close()  # without announcing it: the pooled connection goes stale

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = http1.Client(maxsize=4)
    for i in range(3):
        response = client.post(
            f"http://127.0.0.1:{port}/x", {"content-type": "application/json"}, b'{"n":%d}' % i, 2, 2
        )
        assert (response.status, response.read(), response.headers["x-up"]) == (200, b"ok", "1")
    thread.join(timeout=5)
    listener.close()
    assert seen == [b'{"n":0}', b'{"n":1}', b'{"n":2}']


def test_http1_client_errors() -> None:
    client = http1.Client(maxsize=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(http1.ConnectFailed):
        client.post(f"http://127.0.0.1:{port}/", {}, b"", 1, 1)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(http1.ResponseTimeout):  # accepts (backlog) but never answers
            client.post(f"http://127.0.0.1:{listener.getsockname()[1]}/", {}, b"{}", 1, 0.3)
    finally:
        listener.close()


def test_http1_stream_reports_silence_and_resumes_mid_chunk(serve_once: Callable[[list[bytes | float]], int]) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    port = serve_once([head, b"5\r\nhel", 0.35, b"lo\r\n", b"3\r\nabc\r\n0\r\n\r\n"])
    response = http1.Client(maxsize=1).post(f"http://127.0.0.1:{port}/", {}, b"{}", 2, 2)
    got = list(response.iter_chunks(idle_seconds=0.1, silence_seconds=5))
    # whole chunks only ("hel" is held until "lo" completes it); "abc" may come in the same read
    assert [c for c in got if c] in ([b"hello", b"abc"], [b"helloabc"])
    assert got.count(b"") >= 2  # silent intervals were reported, mid-chunk, without losing bytes


def test_http1_stream_silence_limit(serve_once: Callable[[list[bytes | float]], int]) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    port = serve_once([head, b"12345", 1.5, b"67890"])
    response = http1.Client(maxsize=1).post(f"http://127.0.0.1:{port}/", {}, b"{}", 2, 2)
    with pytest.raises(http1.ResponseTimeout):
        list(response.iter_chunks(idle_seconds=0.1, silence_seconds=0.5))


def test_chunked_bodies_are_decoded_strictly_and_the_connection_reused_only_when_clean(
    serve: Callable[..., Server],
) -> None:
    """The streamed body's chunked coding is `_Dechunker`'s: extensions ignored, trailers
    skipped, each chunk whole; bad framing is a ProtocolError; a connection goes back to the
    pool only after a clean end on a keep-alive response."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    replies = [
        chunked + b"3;name=value\r\nabc\r\n<pause><pause>2 \r\nde\r\n0\r\nX-One: 1\r\nX-Two: 2\r\n\r\n",
        chunked + b"2\r\nok\r\n0\r\n\r\n",  # clean: reused by the next request
        chunked + b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n",  # bytes past the end: not reused
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ]
    server = serve(lambda n, head, body: replies[n % len(replies)])
    client = http1.Client(maxsize=1)
    got = list(client.post(server.url, {}, b"{}", 2, 2).iter_chunks(idle_seconds=1, silence_seconds=5))
    assert got == [b"abc", b"de"]  # the pause split them; the extension and trailers are not data
    assert client.post(server.url, {}, b"{}", 2, 2).read() == b"ok"
    assert client.post(server.url, {}, b"{}", 2, 2).read() == b"ok"
    assert server.accepted == 1  # three exchanges on one connection so far
    assert client.post(server.url, {}, b"{}", 2, 2).read() == b"ok"  # on a fresh one: bytes past the last end
    assert client.post(server.url, {}, b"{}", 2, 2).read() == b"abcde"  # another: that one said `close`
    assert server.accepted == 3


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nabc\r\n0\r\n\r\n",  # not a hex size
        b"3\r\nabcX\r\n0\r\n\r\n",  # no CRLF after the data
        b"2\r\nok\r\n0\r\nno colon\r\n\r\n",  # a malformed trailer field
        b"12345678901234567\r\n",  # a size of more than 16 hex digits
    ],
)
def test_bad_chunked_framing_is_a_protocol_error(serve: Callable[..., Server], body: bytes) -> None:
    server = serve(lambda n, head, _: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    response = http1.Client(maxsize=1).post(server.url, {}, b"{}", 2, 2)
    with pytest.raises(http1.ProtocolError, match="bad response body"):
        list(response.iter_chunks(idle_seconds=1, silence_seconds=5))
