"""The one-origin gateway app for gunicorn, wrapped with a request log the e2e tests read.

gunicorn loads `gateway_wsgi:app` with $GATEWAY_CONFIG pointing at the test's
gateway.yaml and $E2E_REQUEST_LOG at a JSON-lines file. Each line says what the
CLI asked and what the gateway answered: method, path, a few headers (never
Authorization), the OAuth grant type, the model and `stream` of inference
calls, status and ETag. No token, secret or prompt text is written.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from gateway import local

WATCHED_HEADERS = ("if-none-match", "user-agent", "anthropic-beta", "content-type", "x-app")
MAX_PEEK = 4 * 1024 * 1024  # request bodies the log peeks into (an inference body is ~90 KB)

StartResponse = Callable[..., Any]


class RequestLog:
    def __init__(self, app: Callable[..., Iterable[bytes]], path: str) -> None:
        self.app = app
        self.path = path
        self.lock = threading.Lock()

    def _peek(self, environ: dict[str, Any]) -> bytes:
        """Read the body and put it back, so the app sees it unchanged."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return b""
        if length <= 0 or length > MAX_PEEK:
            return b""
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        return bytes(body)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        entry: dict[str, Any] = {
            "t": round(time.time(), 3),
            "method": environ.get("REQUEST_METHOD"),
            "path": path,
            "query": environ.get("QUERY_STRING", ""),
            "headers": {
                name: environ[key]
                for name in WATCHED_HEADERS
                if (key := "HTTP_" + name.upper().replace("-", "_")) in environ
                or (key := name.upper().replace("-", "_")) in environ
            },
        }
        # Whether a bearer came, never the credential itself.
        entry["bearer"] = environ.get("HTTP_AUTHORIZATION", "").lower().startswith("bearer ")
        if path == "/oauth/token":
            form = parse_qs(self._peek(environ).decode("utf-8", "replace"))
            entry["grant_type"] = form.get("grant_type", [""])[0]
        elif path.startswith("/v1/messages"):
            try:
                body = json.loads(self._peek(environ) or b"{}")
                entry["model"] = body.get("model")
                entry["stream"] = body.get("stream")
            except ValueError:
                entry["model"] = None

        def logged_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            entry["status"] = int(status.split(" ", 1)[0])
            for name, value in headers:
                if name.lower() == "etag":
                    entry["etag"] = value
            line = json.dumps(entry, sort_keys=True)
            with self.lock, open(self.path, "a", encoding="utf-8") as out:
                out.write(line + "\n")
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return self.app(environ, logged_start)


app = RequestLog(local.create_app(), os.environ["E2E_REQUEST_LOG"])
