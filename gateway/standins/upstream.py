"""LOCAL STAND-IN for the model upstream: Vertex AI's and Anthropic's wire formats on 127.0.0.1.

Used by the tests, `make run` and the benchmark. An aiohttp server (one event
loop in a background thread, or its own process) that answers:

Vertex AI (base_url `http://127.0.0.1:PORT/v1`):
  POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:streamRawPredict
  POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict
  POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/count-tokens:rawPredict
  Like Vertex, it refuses a body with `model` (except count-tokens, which needs
  it) or without `anthropic_version`. It refuses `tags` on every path.
Anthropic (base_url `http://127.0.0.1:PORT`):
  POST /v1/messages, POST /v1/messages/count_tokens (`x-api-key` checked when `api_key` is set)
Google metadata server (for google-auth ADC, with GCE_METADATA_HOST/IP pointed here):
  GET /, /computeMetadata/v1/instance/service-accounts/default/?recursive=true, …/token, …/project/project-id
Control:
  GET /_standin/stats (running totals of usage served), GET /_standin/requests,
  POST /_standin/config (JSON: new defaults), POST /_standin/reset

Options (keyword arguments of `start`, `--option value` on the command line,
`POST /_standin/config`, or per request: a `x-standin-<option>` header with
`-` for `_`, or a `_standin` object in the request body, which the gateway
passes through like any unknown field):
  ttft_ms            delay before the response starts (headers and the first event)
  gap_ms             delay between two consecutive events of a stream
  deltas             number of content_block_delta events
  text               the text of each delta
  input_tokens, output_tokens, cache_read_input_tokens,
  cache_creation_5m_input_tokens, cache_creation_1h_input_tokens   usage reported
  count_tokens       input_tokens answered by count_tokens (default: bytes of the body / 4)
  error_status       answer every request with this status (0 = no error) …
  error_type, error_message, error_format ("anthropic" envelope or "vertex" Google error)
  api_key            required x-api-key on Anthropic paths (None = not checked)
  bearer             required `Authorization: Bearer` on Vertex paths (None = not checked;
                     "metadata" = any token this stand-in's metadata server issued)
  record             keep received requests (URL, headers, body, bytes sent) for assertions
  max_records        at most this many kept (oldest dropped)

SSE sequence (Anthropic's): message_start (usage: input, cache, output 1),
content_block_start, ping, content_block_delta × deltas, content_block_stop,
message_delta (cumulative usage incl. cache_creation breakdown), message_stop.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULTS: dict[str, Any] = {
    "ttft_ms": 0,
    "gap_ms": 0,
    "deltas": 3,
    "text": "Hello from the stand-in. ",
    "input_tokens": 25,
    "output_tokens": 12,
    "cache_read_input_tokens": 0,
    "cache_creation_5m_input_tokens": 0,
    "cache_creation_1h_input_tokens": 0,
    "count_tokens": None,
    "error_status": 0,
    "error_type": "api_error",
    "error_message": "Injected error from the stand-in.",
    "error_format": "anthropic",
    "api_key": None,
    "bearer": None,
    "record": True,
    "max_records": 1000,
    "metadata_token_ttl": 3599,
}
_INT_OPTIONS = {k for k, v in DEFAULTS.items() if isinstance(v, int) and not isinstance(v, bool)} | {"count_tokens"}
_BOOL_OPTIONS = {"record"}

_VERTEX = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/publishers/anthropic/models/"
    r"(?P<model>[^/:]+):(?P<method>streamRawPredict|rawPredict)$"
)
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _coerce(name: str, value: Any) -> Any:
    if value is None or name not in DEFAULTS:
        return value
    if name in _BOOL_OPTIONS and isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    if name in _INT_OPTIONS and isinstance(value, str):
        return None if value.lower() in ("", "none") else int(value)
    return value


@dataclass
class Record:
    """One request the stand-in received, and what it sent back."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    started: float = field(default_factory=time.monotonic)
    status: int = 0
    sent: bytearray = field(default_factory=bytearray)
    event_times: list[float] = field(default_factory=list)
    completed: bool = False

    @property
    def url(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.streams = 0
        self.errors = 0
        self.completed = 0
        self.count_tokens = 0
        self.metadata_tokens = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_input_tokens = 0
        self.cache_creation_5m_input_tokens = 0
        self.cache_creation_1h_input_tokens = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class Upstream:
    """The server's state: options, records and totals."""

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown stand-in option(s): {', '.join(sorted(unknown))}")
        self.initial = {**DEFAULTS, **options}
        self.options = dict(self.initial)
        self.records: collections.deque[Record] = collections.deque(maxlen=int(self.options["max_records"]))
        self.stats = Stats()
        self.counter = 0
        self.issued_tokens: set[str] = set()

    # -- options --------------------------------------------------------------------
    def effective(self, request: web.Request, body: Any) -> dict[str, Any]:
        opts = self.options
        overrides: dict[str, Any] = {}
        for name, value in request.headers.items():
            lower = name.lower()
            if lower.startswith("x-standin-"):
                key = lower[len("x-standin-") :].replace("-", "_")
                if key in DEFAULTS:
                    overrides[key] = _coerce(key, value)
        if isinstance(body, dict) and isinstance(body.get("_standin"), dict):
            for key, value in body["_standin"].items():
                if key in DEFAULTS:
                    overrides[key] = _coerce(key, value)
        return {**opts, **overrides} if overrides else opts

    # -- the app --------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_standin/"):
            return await self.control(request, path)
        if path == "/" or path.startswith("/computeMetadata/"):
            return self.metadata(request, path)
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        opts = self.effective(request, body)
        record = Record(request.method, path, request.query_string, dict(request.headers), raw, body)
        if opts["record"]:
            self.records.append(record)
        self.stats.requests += 1
        if request.method != "POST":
            return self.error(record, 405, "invalid_request_error", "Method not allowed.", "anthropic")
        if not isinstance(body, dict):
            return self.error(record, 400, "invalid_request_error", "Body is not a JSON object.", "anthropic")

        vertex = _VERTEX.match(path)
        if vertex or path.startswith("/v1/projects/"):
            return await self.vertex(request, record, body, opts, vertex)
        if path in ("/v1/messages", "/v1/messages/count_tokens"):
            if opts["api_key"] is not None and request.headers.get("x-api-key") != opts["api_key"]:
                return self.error(record, 401, "authentication_error", "invalid x-api-key", "anthropic")
            if "tags" in body:
                return self.error(
                    record, 400, "invalid_request_error", "tags: Extra inputs are not permitted", "anthropic"
                )
            if opts["error_status"]:
                return self.injected(record, opts)
            if path.endswith("count_tokens"):
                return self.count(record, raw, opts)
            model = body.get("model")
            if not isinstance(model, str):
                return self.error(record, 400, "invalid_request_error", "model: Field required", "anthropic")
            return await self.reply(request, record, body, opts, model, anthropic=True)
        return self.error(record, 404, "not_found_error", f"No stand-in route for {path}", "anthropic")

    async def vertex(
        self, request: web.Request, record: Record, body: dict[str, Any], opts: dict[str, Any], match: Any
    ) -> web.StreamResponse:
        if opts["bearer"] is not None and not self.bearer_ok(opts["bearer"], request.headers.get("Authorization", "")):
            return self.error(
                record, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", "vertex"
            )
        count = request.path.endswith("/models/count-tokens:rawPredict")
        if not count and match is None:
            return self.error(record, 404, "NOT_FOUND", f"Unknown Vertex path {request.path}", "vertex")
        if "tags" in body:
            return self.error(record, 400, "invalid_request_error", "tags: Extra inputs are not permitted", "anthropic")
        if "anthropic_version" not in body:
            return self.error(record, 400, "invalid_request_error", "anthropic_version: Field required", "anthropic")
        if count:
            if not isinstance(body.get("model"), str):
                return self.error(record, 400, "invalid_request_error", "model: Field required", "anthropic")
        elif "model" in body:
            return self.error(
                record, 400, "invalid_request_error", "model: Extra inputs are not permitted", "anthropic"
            )
        if opts["error_status"]:
            return self.injected(record, opts)
        if count:
            return self.count(record, record.body, opts)
        # Vertex answers with the Anthropic-style id of the @-versioned model it ran.
        model = match.group("model").replace("@", "-")
        return await self.reply(request, record, body, opts, model, anthropic=False)

    def bearer_ok(self, wanted: str, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        if wanted == "metadata":  # a token this stand-in's metadata server issued
            return token in self.issued_tokens
        return token == wanted

    # -- replies -----------------------------------------------------------------------
    def usage(self, opts: dict[str, Any], output_tokens: int) -> dict[str, Any]:
        five = int(opts["cache_creation_5m_input_tokens"])
        hour = int(opts["cache_creation_1h_input_tokens"])
        return {
            "input_tokens": int(opts["input_tokens"]),
            "cache_creation_input_tokens": five + hour,
            "cache_read_input_tokens": int(opts["cache_read_input_tokens"]),
            "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def headers(self, anthropic: bool, content_type: str) -> dict[str, str]:
        headers = {"Content-Type": content_type}
        if anthropic:
            # What Anthropic's API adds and the gateway must strip.
            headers["request-id"] = "req_standin_" + secrets.token_hex(8)
            headers["anthropic-organization-id"] = "00000000-0000-0000-0000-000000000000"
            headers["anthropic-ratelimit-requests-limit"] = "4000"
            headers["anthropic-ratelimit-requests-remaining"] = "3999"
        else:
            headers["x-vertex-ai-internal"] = "standin"
        return headers

    async def reply(
        self,
        request: web.Request,
        record: Record,
        body: dict[str, Any],
        opts: dict[str, Any],
        model: str,
        anthropic: bool,
    ) -> web.StreamResponse:
        self.counter += 1
        message_id = f"msg_standin_{self.counter:08d}"
        deltas = int(opts["deltas"])
        text = str(opts["text"])
        if opts["ttft_ms"]:
            await asyncio.sleep(opts["ttft_ms"] / 1000)
        if body.get("stream") is True:
            return await self.stream(request, record, opts, model, message_id, deltas, text, anthropic)
        message = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text * deltas}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": self.usage(opts, int(opts["output_tokens"])),
        }
        payload = json.dumps(message).encode()
        record.sent += payload
        record.status = 200
        record.completed = True
        self.served(opts)
        return web.Response(body=payload, status=200, headers=self.headers(anthropic, "application/json"))

    async def stream(
        self,
        request: web.Request,
        record: Record,
        opts: dict[str, Any],
        model: str,
        message_id: str,
        deltas: int,
        text: str,
        anthropic: bool,
    ) -> web.StreamResponse:
        self.stats.streams += 1
        response = web.StreamResponse(status=200, headers=self.headers(anthropic, "text/event-stream; charset=utf-8"))
        response.headers["Cache-Control"] = "no-cache"
        response.enable_chunked_encoding()
        await response.prepare(request)
        record.status = 200
        start_usage = self.usage(opts, 1)
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            ),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            ("ping", {"type": "ping"}),
        ]
        events += [
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            )
            for _ in range(deltas)
        ]
        final_usage = self.usage(opts, int(opts["output_tokens"]))
        final_usage.pop("service_tier")
        final_usage.pop("cache_creation")
        final_usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": int(opts["cache_creation_5m_input_tokens"]),
            "ephemeral_1h_input_tokens": int(opts["cache_creation_1h_input_tokens"]),
        }
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": final_usage,
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        gap = opts["gap_ms"] / 1000
        try:
            for i, (name, data) in enumerate(events):
                if i and gap:
                    await asyncio.sleep(gap)
                separators = (", ", ": ") if name == "ping" else (",", ":")
                chunk = f"event: {name}\ndata: {json.dumps(data, separators=separators)}\n\n".encode()
                record.event_times.append(time.monotonic())
                await response.write(chunk)
                record.sent += chunk
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        record.completed = True
        self.served(opts)
        return response

    def served(self, opts: dict[str, Any]) -> None:
        stats = self.stats
        stats.completed += 1
        stats.input_tokens += int(opts["input_tokens"])
        stats.output_tokens += int(opts["output_tokens"])
        stats.cache_read_input_tokens += int(opts["cache_read_input_tokens"])
        stats.cache_creation_5m_input_tokens += int(opts["cache_creation_5m_input_tokens"])
        stats.cache_creation_1h_input_tokens += int(opts["cache_creation_1h_input_tokens"])

    def count(self, record: Record, raw: bytes, opts: dict[str, Any]) -> web.Response:
        self.stats.count_tokens += 1
        tokens = opts["count_tokens"]
        if tokens is None:
            tokens = max(1, len(raw) // 4)
        payload = json.dumps({"input_tokens": int(tokens)}).encode()
        record.sent += payload
        record.status = 200
        record.completed = True
        return web.Response(body=payload, status=200, content_type="application/json")

    def injected(self, record: Record, opts: dict[str, Any]) -> web.Response:
        status = int(opts["error_status"])
        return self.error(
            record, status, str(opts["error_type"]), str(opts["error_message"]), str(opts["error_format"])
        )

    def error(self, record: Record, status: int, kind: str, message: str, fmt: str) -> web.Response:
        self.stats.errors += 1
        if fmt == "vertex":
            payload: dict[str, Any] = {
                "error": {"code": status, "message": message, "status": _GOOGLE_STATUS.get(status, kind)}
            }
        else:
            payload = {"type": "error", "error": {"type": kind, "message": message}}
        body = json.dumps(payload).encode()
        record.sent += body
        record.status = status
        record.completed = True
        headers = {"retry-after": "7"} if status == 429 else {}
        return web.Response(body=body, status=status, content_type="application/json", headers=headers)

    # -- Google's metadata server (what google-auth's ADC reads on Cloud Run) -----------
    def metadata(self, request: web.Request, path: str) -> web.Response:
        flavor = {"Metadata-Flavor": "Google"}
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor:Google header.", headers=flavor)
        base = "/computeMetadata/v1/"
        if path == "/":
            return web.Response(text="computeMetadata/\n", headers=flavor)
        if path == base + "project/project-id":
            return web.Response(text="standin-project", headers=flavor)
        if path.startswith(base + "instance/service-accounts/default"):
            tail = path[len(base + "instance/service-accounts/default") :]
            if tail in ("", "/"):
                info = {
                    "aliases": ["default"],
                    "email": "gateway@standin-project.iam.gserviceaccount.com",
                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                }
                return web.json_response(info, headers=flavor)
            if tail == "/token":
                self.stats.metadata_tokens += 1
                token = "standin-access-token-" + secrets.token_hex(8)
                self.issued_tokens.add(token)
                return web.json_response(
                    {
                        "access_token": token,
                        "expires_in": int(self.options["metadata_token_ttl"]),
                        "token_type": "Bearer",
                    },
                    headers=flavor,
                )
            if tail == "/email":
                return web.Response(text="gateway@standin-project.iam.gserviceaccount.com", headers=flavor)
        return web.Response(status=404, text="not found", headers=flavor)

    # -- control --------------------------------------------------------------------
    async def control(self, request: web.Request, path: str) -> web.Response:
        if path == "/_standin/stats":
            return web.json_response(self.stats.as_dict())
        if path == "/_standin/requests":
            return web.json_response(
                [
                    {"method": r.method, "url": r.url, "headers": r.headers, "json": r.json, "status": r.status}
                    for r in self.records
                ]
            )
        if path == "/_standin/config" and request.method == "POST":
            changes = await request.json()
            unknown = set(changes) - set(DEFAULTS)
            if unknown:
                return web.json_response({"error": f"unknown option(s): {sorted(unknown)}"}, status=400)
            self.options.update({k: _coerce(k, v) for k, v in changes.items()})
            return web.json_response(self.options)
        if path == "/_standin/reset" and request.method == "POST":
            self.reset()
            return web.json_response({"ok": True})
        return web.json_response({"error": "unknown control path"}, status=404)

    def reset(self) -> None:
        self.options = dict(self.initial)
        self.records.clear()
        self.stats.reset()


class Handle:
    """A running stand-in (background thread with its own event loop)."""

    def __init__(
        self,
        state: Upstream,
        loop: asyncio.AbstractEventLoop,
        runner: web.AppRunner,
        port: int,
        thread: threading.Thread,
    ) -> None:
        self.state = state
        self._loop = loop
        self._runner = runner
        self.port = port
        self._thread = thread

    @property
    def origin(self) -> str:
        """Base URL for an `anthropic` upstream (and the metadata host for google-auth)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """Base URL for a `vertex` upstream (replaces https://{region}-aiplatform.googleapis.com/v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[Record]:
        return list(self.state.records)

    def stats(self) -> dict[str, int]:
        return self.state.stats.as_dict()

    def configure(self, **options: Any) -> None:
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown stand-in option(s): {', '.join(sorted(unknown))}")
        self.state.options.update(options)

    def reset(self) -> None:
        self.state.reset()

    def stop(self) -> None:
        if not self._loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def start(port: int = 0, host: str = "127.0.0.1", **options: Any) -> Handle:
    """Run the stand-in in a background thread; returns once it accepts connections."""
    state = Upstream(**options)
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()

    async def setup() -> None:
        runner = web.AppRunner(state.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        server = site._server  # the bound socket tells the port chosen for port=0
        assert server is not None
        ready["port"] = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        ready["runner"] = runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(setup())
        except BaseException as exc:
            ready["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="upstream-standin", daemon=True)
    thread.start()
    started.wait(timeout=10)
    if "error" in ready:
        raise RuntimeError(f"the upstream stand-in could not start: {ready['error']}")
    return Handle(state, loop, ready["runner"], int(ready["port"]), thread)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.standins.upstream", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--host", default="127.0.0.1")
    for name, value in DEFAULTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=value)
    args = parser.parse_args(argv)
    options = {name: _coerce(name, getattr(args, name)) for name in DEFAULTS}
    state = Upstream(**options)
    print(
        f"upstream stand-in on http://{args.host}:{args.port} (vertex base_url http://{args.host}:{args.port}/v1)",
        flush=True,
    )
    web.run_app(state.app(), host=args.host, port=args.port, access_log=None, print=None, backlog=1024)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
