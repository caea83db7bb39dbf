"""The bounded body reader, the bounded decompressor, and the JSON-object reader's statuses."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Request
from werkzeug.test import EnvironBuilder

from common.core.errors import GatewayError
from common.http import bodies, read_json_body


class Trickle(io.RawIOBase):
    """A WSGI input that hands out one byte per read, as a slow socket may; counts what was read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.taken = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.taken >= len(self.data) or not len(buffer):
            return 0
        buffer[0] = self.data[self.taken]
        self.taken += 1
        return 1


@contextmanager
def posted(
    data: bytes = b"",
    headers: dict[str, str] | None = None,
    stream: io.RawIOBase | None = None,
) -> Iterator[Request]:
    """A POST whose environ says exactly what `headers` say (the test client would fix them up)."""
    environ = EnvironBuilder(method="POST", path="/").get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.pop("CONTENT_TYPE", None)
    environ["wsgi.input"] = stream if stream is not None else io.BytesIO(data)
    if stream is not None:
        environ["wsgi.input_terminated"] = True  # a server that ends the (chunked) input itself
    headers = dict(headers or {})
    if stream is None:
        headers.setdefault("Content-Length", str(len(data)))
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_LENGTH", "CONTENT_TYPE") else f"HTTP_{key}"] = value
    yield Request(environ)


def test_reads_within_the_bound() -> None:
    with posted(b"x" * 100) as request:
        assert bodies.read(request, 100) == b"x" * 100
    with posted(b"") as request:
        assert bodies.read(request, 100) == b""


@pytest.mark.parametrize(
    ("headers", "declared", "taken"),
    [
        ({"Content-Length": "5000"}, 5000, 0),  # refused on the header, before a byte is read
        ({"Transfer-Encoding": "chunked"}, None, 101),  # read one past the bound and no further
    ],
)
def test_over_the_bound(headers: dict[str, str], declared: int | None, taken: int) -> None:
    source = Trickle(b"y" * 10_000)
    with posted(headers=headers, stream=source) as request, pytest.raises(bodies.TooLarge) as refused:
        bodies.read(request, 100)
    assert refused.value.declared == declared and not refused.value.inflated
    assert source.taken == taken


def test_short_reads_are_joined() -> None:
    with posted(headers={"Transfer-Encoding": "chunked"}, stream=Trickle(b"abcdef")) as request:
        assert bodies.read(request, 100) == b"abcdef"


def test_length_rules() -> None:
    with (
        posted(headers={"Transfer-Encoding": "gzip, chunked"}, stream=Trickle(b"{}")) as request,
        pytest.raises(bodies.LengthRequired),
    ):
        bodies.read(request, 100, length_required=True)
    with posted(headers={"Transfer-Encoding": "chunked"}, stream=Trickle(b"{}")) as request:
        assert bodies.read(request, 100) == b"{}"  # chunked is fine where no length is required
    for bad in ("ten", "-1", "+5", "1e3"):
        with posted(b"abc", headers={"Content-Length": bad}) as request, pytest.raises(bodies.InvalidLength):
            bodies.read(request, 100)


def test_decompress() -> None:
    payload = b"otlp " * 100
    assert bodies.decompress(payload, None, 1000) == payload
    assert bodies.decompress(payload, " Identity ", 1000) == payload
    assert bodies.decompress(gzip.compress(payload), "gzip", 1000) == payload
    assert bodies.decompress(zlib.compress(payload), "deflate", 1000) == payload
    with pytest.raises(bodies.UnsupportedEncoding):
        bodies.decompress(payload, "br", 1000)
    with pytest.raises(bodies.CorruptEncoding):
        bodies.decompress(b"\x1f\x8b not gzip", "gzip", 1000)


def test_decompression_bombs_stop_at_the_bound() -> None:
    bomb = gzip.compress(b"\x00" * 5_000_000)
    assert len(bomb) < 10_000
    with pytest.raises(bodies.TooLarge) as refused:
        bodies.decompress(bomb, "gzip", 10_000)
    assert refused.value.inflated
    exact = gzip.compress(b"\x00" * 10_000)
    assert len(bodies.decompress(exact, "gzip", 10_000)) == 10_000


def _json_error(data: bytes = b"", headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, str, str]:
    with posted(data, headers, **kw) as request, pytest.raises(GatewayError) as raised:
        read_json_body(request, 100)
    return raised.value.status, raised.value.error_type, raised.value.message


def test_json_body_statuses() -> None:
    with posted(b'{"a": 1}', {"Content-Type": "application/json"}) as request:
        assert read_json_body(request, 100) == {"a": 1}
    assert _json_error(headers={"Transfer-Encoding": "chunked"}, stream=Trickle(b"{}"))[:2] == (
        411,
        "invalid_request_error",
    )
    assert _json_error(b"{}", {"Content-Length": "many"}) == (
        400,
        "invalid_request_error",
        "Content-Length is not a number.",
    )
    assert _json_error(b"x" * 200) == (
        413,
        "request_too_large",
        "Request body of 200 bytes exceeds the gateway's limit of 100 bytes (limits.max_request_bytes).",
    )
    assert _json_error(headers={"Transfer-Encoding": "chunked", "Content-Length": "5"}, stream=Trickle(b"z" * 500)) == (
        413,
        "request_too_large",
        "Request body exceeds 100 bytes.",
    )
    assert "empty" in _json_error(b"")[2]
    assert "not valid JSON" in _json_error(b"{nope")[2]
    assert "JSON object" in _json_error(b"[1]")[2]
