"""Helpers of the alert tests: a local webhook receiver and a burst of metered requests from one user."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "alert-hmac-secret-0123456789abcdef"
# Haiku 4.5 with 4,000 request bytes and max_tokens 1,000: the estimate (1,000 input + 1,000 output
# tokens) is exactly the settled cost, 6,000 micro-dollars, so the admitted requests fill the cap.
COST = 6_000


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self, path: str = "/hook") -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.calls if c["status"] == 200 and c["path"] == path]


@contextmanager
def receiver(fail_first: int = 0) -> Iterator[Receiver]:
    """An HTTP server on loopback recording every POST; each alert id fails `fail_first` times with 500."""
    seen: dict[str, int] = {}
    state = Receiver("", fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            alert_id = self.headers.get("X-Gateway-Alert-Id", "")
            with state.lock:
                seen[self.path + alert_id] = seen.get(self.path + alert_id, 0) + 1
                status = 500 if seen[self.path + alert_id] <= state.fail_first else 200
                state.calls.append(
                    {
                        "path": self.path,
                        "status": status,
                        "headers": dict(self.headers),
                        "body": body,
                        "json": json.loads(body),
                    }
                )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield state
    finally:
        server.shutdown()
        thread.join(timeout=5)


def burst(email: str, count: int, workers: int | None = None) -> tuple[int, int]:
    """`count` concurrent requests of `email` through metering (reserve, then settle the upstream's usage). (admitted, refused)."""
    from common import config
    from common.core.errors import GatewayError
    from common.core.usage import Usage
    from common.proxy import metering
    from support.spend import request_info

    cfg = config.current()
    start = threading.Barrier(min(count, workers or count))

    def one(_: int) -> bool:
        try:
            start.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        try:
            ticket = metering.begin(cfg, request_info(email=email, max_tokens=1000, input_bytes=4000))
        except GatewayError as exc:
            assert exc.status == 429
            return False
        metering.finish(cfg, ticket, Usage(input_tokens=1000, output_tokens=1000), 200)
        return True

    with ThreadPoolExecutor(max_workers=workers or count) as pool:
        results = list(pool.map(one, range(count)))
    return sum(results), len(results) - sum(results)
