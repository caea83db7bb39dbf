"""Fixtures of the proxy tests: a raw upstream that plays exact bytes with pauses between them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

Script = list[bytes | float]


def _serve_once(script: Script) -> int:
    """A raw HTTP server answering one request with `script` (bytes sent, floats slept); its port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        for step in script:
            if isinstance(step, float):
                time.sleep(step)
            else:
                conn.sendall(step)
        time.sleep(0.5)
        conn.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1])


@pytest.fixture
def serve_once() -> Callable[[Script], int]:
    return _serve_once
