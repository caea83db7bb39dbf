"""A client that goes away mid-response: the server sees the connection reset."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

_RESET_ON_CLOSE = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: close sends RST


def post_then_hang_up(base_url: str, path: str, token: str, body: bytes) -> bytes:
    """POST a JSON `body` over a raw socket, read the answer's first bytes, reset; returns those bytes."""
    parts = urlsplit(base_url)
    sock = socket.create_connection((parts.hostname, parts.port))
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n".encode()
            + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        first = sock.recv(4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    finally:
        sock.close()
    return first
