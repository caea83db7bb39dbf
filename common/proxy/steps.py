"""The steps of one `/v1/messages` (or `count_tokens`) request, in the order `pipeline` runs them.

`check_body` → `apply_policy` → `route` → `reserve` → `send` → `relay` (a
stream) or `read_plain`, each settling through `settle`. A step refuses by
raising a `GatewayError` (the client gets the protocol's envelope). Once
`reserve` has succeeded every way out settles exactly once, an upstream error
too (nothing used), so no reservation is left holding spend. Nothing here
imports lazily or parses config per request: per-config values come from
`settings(cfg)`, derived once per config version.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from flask import Request, Response

from common import config, policy
from common.config import Config, Upstream
from common.core import logs, models
from common.core.errors import GatewayError
from common.core.identity import Identity
from common.core.usage import RequestInfo, Usage
from common.http import annotate, bodies, read_json_body
from common.policy import hints, managed
from common.proxy import http1, metering, upstreams
from common.proxy.metering import Ticket
from common.proxy.relay import StreamRelay
from common.proxy.sse import UsageScanner, usage_of_body

_MAX_ERROR_BODY = 64 * 1024
# Control characters (C0, DEL, C1) and lone surrogates: no model id or tag has them, and a
# NUL is a value PostgreSQL refuses, so one would reach the ledger's group commit.
_UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _check_text(name: str, value: str) -> None:
    """400 naming the field when `value` holds a control character (before any reservation)."""
    found = _UNSAFE_TEXT.search(value)
    if found is not None:
        raise GatewayError(
            400, f"{name}: contains a control character (U+{ord(found.group()):04X}); remove it and send again."
        )


# The body's top level, each value kept as its raw JSON (`msgspec.Raw`): the path reads
# only `model`, `stream`, `max_tokens` and `tags` (and the tool fields under tool rules),
# so the ~88 KB of messages, system and tools Claude Code sends are neither turned into
# Python objects nor encoded again (~20 µs instead of ~300 µs), and reach the upstream as
# the client wrote them. Duplicate top-level keys collapse to the last, as json.loads does.
_TOP_LEVEL = msgspec.json.Decoder(dict[str, msgspec.Raw])
_decode_value = msgspec.json.decode


def decode_body(raw: bytes) -> Any:
    """The JSON object's top level with raw values; `ValueError` for what is not JSON, None for a non-object."""
    if not raw.isascii():
        raw.decode("utf-8")  # UnicodeDecodeError (a ValueError): msgspec does not check UTF-8 in values it skips
    try:
        return _TOP_LEVEL.decode(raw)
    except msgspec.ValidationError:
        return None  # JSON, but not an object
    except (msgspec.DecodeError, RecursionError):
        # Only on the error path: the web layer's checker names the reason (depth, lone surrogate, syntax).
        bodies.loads(raw)
        raise


def value(body: dict[str, Any], key: str, default: Any = None) -> Any:
    """A top-level value of the body, decoded from its raw JSON on first use (and kept decoded).

    400 for JSON that Python cannot hold, such as a number out of a float's range.
    """
    found = body.get(key, default)
    if isinstance(found, msgspec.Raw):
        try:
            found = body[key] = _decode_value(found)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise GatewayError(400, f"{key}: {exc}.") from None
    return found


@dataclass(frozen=True, slots=True)
class Settings:
    """The request path's values of one config version (timeouts in seconds)."""

    connect_seconds: float
    ttfb_seconds: float
    plain_seconds: float
    read_seconds: float
    ping_seconds: float
    drain_seconds: float
    billing_tag: str | None


def _build_settings(cfg: Config) -> Settings:
    t = cfg.timeouts
    return Settings(
        connect_seconds=t.upstream_connect_ms / 1000,
        ttfb_seconds=t.upstream_ttfb_ms / 1000,
        plain_seconds=max(t.upstream_ttfb_ms, t.upstream_read_ms) / 1000,
        read_seconds=t.upstream_read_ms / 1000,
        ping_seconds=t.ping_interval_ms / 1000,
        drain_seconds=t.drain_after_disconnect_ms / 1000,
        billing_tag=cfg.admin.billing_group_tag if cfg.admin else None,
    )


def settings(cfg: Config) -> Settings:
    """This config version's `Settings`, built once."""
    return config.derive(cfg, _build_settings)


@dataclass(slots=True)
class Call:
    """The client's request once checked; `apply_policy` edits `body` and sets `billing_group`.

    `body`'s values stay raw JSON (`msgspec.Raw`) until a step reads them with `value`;
    the upstream encoders write raw values back as they are.
    """

    endpoint: str  # messages | count_tokens
    body: dict[str, Any]
    model: str
    stream: bool
    billing_group: str | None = None
    client: str | None = None  # User-Agent product token (the fleet page)
    # The managed-settings checksum header, held only to be judged in `reserve` (sensitive: never logged).
    settings_hint: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Outbound:
    """Where the call goes and the request that goes there.

    `route` and `prepared` are the first upstream to try (the reservation is
    priced for it); `routes` is every upstream of the model in the order
    `send` tries them, `route` first. The request for a later one is prepared
    only if it is reached (from `call`, `forwarded` and `query`).
    """

    route: upstreams.Route
    prepared: upstreams.Prepared
    routes: tuple[upstreams.Route, ...] = ()
    call: Call | None = None
    forwarded: tuple[tuple[str, str], ...] = ()
    query: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """The upstream's successful response head; `headers` are the client's (spend headers included)."""

    response: http1.Response
    upstream: Upstream
    status: int
    headers: list[tuple[str, str]]
    encoding: str | None
    first_byte_ms: float


def check_body(request: Request, cfg: Config, endpoint: str) -> Call:
    """The JSON body within `limits.max_request_bytes` (411/413), with a model and messages (400)."""
    body = read_json_body(request, cfg.limits.max_request_bytes, decode_body)
    model = value(body, "model")
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(400, "model: expected a string naming the model (for example claude-sonnet-4-5).")
    _check_text("model", model)
    tags = value(body, "tags") if "tags" in body else None  # decoded: its text is checked too
    if isinstance(tags, dict):
        for key, tag in tags.items():
            _check_text("tags", key)
            if isinstance(tag, str):
                _check_text(f"tags.{key}", tag)
    messages = body.get("messages")
    if not _is_array(messages):
        raise GatewayError(400, "messages: expected a list of messages.")
    stream = value(body, "stream", False)
    if endpoint == "messages" and not isinstance(stream, bool):
        raise GatewayError(400, "stream: expected true or false.")
    return Call(
        endpoint,
        body,
        model,
        bool(stream) if endpoint == "messages" else False,
        client=hints.client_of(request.headers.get("User-Agent")),
        settings_hint=request.headers.get(hints.HEADER),
    )


def _is_array(found: Any) -> bool:
    """A JSON array: a raw value's first byte tells (msgspec has checked the rest is JSON)."""
    if isinstance(found, msgspec.Raw):
        return memoryview(found)[:1].tobytes() == b"["
    return isinstance(found, list)


def apply_policy(cfg: Config, identity: Identity, call: Call) -> None:
    """The caller's policy on the call: no policy (403), the model (400), tools (403 or stripped), `tags`."""
    found = policy.for_inference(cfg, identity.groups)
    if found is not None:
        index, chosen = found
        policy.check_model(cfg, index, chosen, call.model)
        if policy.has_tool_rules(chosen.tools):
            for key in ("tools", "tool_choice", "messages"):  # what the rules read, decoded (and encoded again)
                value(call.body, key)
        stripped = policy.apply_tools(index, chosen, call.body)
        if stripped:
            logs.info("tools removed by policy", tools=stripped, policy=policy.policy_name(index, chosen))
    call.billing_group = _billing_group(settings(cfg).billing_tag, identity, call.body)


def _billing_group(tag: str | None, identity: Identity, body: dict[str, Any]) -> str | None:
    """The group named by the request's `tags` (if the caller belongs to it); `tags` is removed."""
    if tag is None:
        body.pop("tags", None)
        return None
    tags = value(body, "tags")
    body.pop("tags", None)
    if not isinstance(tags, dict):
        return None
    wanted = tags.get(tag)
    if not isinstance(wanted, str):
        return None
    for group in identity.groups:
        if group.lower() == wanted.lower():
            return group
    logs.info("request tag names a group the caller is not in; ignored", tag=tag, group=wanted)
    return None


def route(request: Request, cfg: Config, call: Call) -> Outbound:
    """The upstreams serving the model in failover order (400 if none), and the request for the first."""
    found = upstreams.routes(cfg, call.model)
    annotate(upstream=found[0].upstream.name, model=models.canonical(call.model))  # for the access-log line
    query = request.query_string.decode("latin-1")
    forwarded = upstreams.forward_headers(request.headers)
    forwarded["content-type"] = "application/json"  # the body is re-encoded as JSON
    outbound = Outbound(
        found[0], _prepare(found[0], call, forwarded, query), found, call, tuple(forwarded.items()), query
    )
    return outbound


def _prepare(route: upstreams.Route, call: Call, forwarded: dict[str, str], query: str) -> upstreams.Prepared:
    """The request for one upstream, without its credential (added per attempt by `send`)."""
    headers = dict(forwarded)  # the provider may add its own (anthropic-version)
    if call.endpoint == "messages":
        return route.client.messages(route.upstream_model, call.body, call.stream, headers, query)
    return route.client.count_tokens(route.upstream_model, call.body, headers, query)


def reserve(cfg: Config, identity: Identity, call: Call, outbound: Outbound) -> Ticket:
    """Reserve an estimate against every spend cap of the caller (429 at a cap)."""
    max_tokens = value(call.body, "max_tokens")
    return metering.begin(
        cfg,
        RequestInfo(
            identity=identity,
            model=models.canonical(call.model),
            upstream=outbound.route.upstream.name,
            upstream_model=outbound.route.upstream_model,
            endpoint=call.endpoint,
            stream=call.stream,
            billing_group=call.billing_group,
            max_tokens=max_tokens if isinstance(max_tokens, int) else 0,
            input_bytes=len(outbound.prepared.body),
            request_id=logs.current_request_id(),
            client=call.client,
            settings_check=managed.settings_check(cfg, identity.groups, call.settings_hint),
        ),
    )


@dataclass(frozen=True, slots=True)
class _Failed:
    """One upstream's error reply or transport failure."""

    error: GatewayError  # what the client gets if no other upstream answers
    status: int  # what the ledger records: the upstream's status, or the error's
    first_byte_ms: float | None
    fails_over: bool  # the next upstream is tried (`upstreams.fails_over`); else it is the answer
    temporary: bool  # may pass by itself: preferred as the client's error (it is retried)
    reason: str  # for the log: a status, or a transport error's class


def send(cfg: Config, ticket: Ticket, outbound: Outbound) -> Reply:
    """POST to the model's upstreams in turn until one answers; wait for its response head.

    Before the client has seen a byte, a failure that `upstreams.fails_over`
    (429/529/5xx/408/401/403/404, a transport failure or timeout, a missing
    credential) moves the request to the next upstream of `outbound.routes`;
    an upstream whose circuit breaker is open is skipped (`_tries`). Any
    other reply (a success, or a 400 about the request itself) is the
    answer. The reservation (made once, by `reserve`) is settled once:
    by the reply's reader, or here on an error, which is the most relevant
    failure when every upstream failed (a temporary one before a
    configuration one, else the last). The ledger, telemetry and access log
    name the upstream that served (or failed last).
    """
    timing = settings(cfg)
    read_timeout = timing.ttfb_seconds if ticket.info.stream else timing.plain_seconds
    failures: list[tuple[upstreams.Route, _Failed]] = []
    for index, candidate in _tries(outbound.routes or (outbound.route,)):
        upstream = candidate.upstream
        try:
            outcome = _attempt(ticket, outbound, candidate, index, timing.connect_seconds, read_timeout)
        except BaseException:
            upstreams.BREAKERS.failed(upstream, "error")  # never leaves a half-open probe claimed
            raise
        if isinstance(outcome, _Failed) and outcome.fails_over:
            upstreams.BREAKERS.failed(upstream, outcome.reason)
            failures.append((candidate, outcome))
            continue
        upstreams.BREAKERS.succeeded(upstream)  # it answered: even a 400 about the request says it works
        if isinstance(outcome, _Failed):
            failures.append((candidate, outcome))
            break
        return _answer(ticket, candidate, outcome, failures)
    served, failed = _client_failure(failures)
    _serving(ticket, served)
    if len(failures) > 1:
        logs.warning("no upstream answered", upstreams=[f"{r.upstream.name}:{f.reason}" for r, f in failures])
    settle(cfg, ticket, Usage(), failed.status, failed.first_byte_ms)
    raise failed.error from None


def _tries(candidates: tuple[upstreams.Route, ...]) -> Iterator[tuple[int, upstreams.Route]]:
    """The upstreams whose breaker lets this request try them; if every one is open, the first anyway:
    a request is never refused untried."""
    tried = False
    for index, candidate in enumerate(candidates):
        if upstreams.BREAKERS.acquire(candidate.upstream):
            tried = True
            yield index, candidate
    if not tried:  # every one open: `routing.routes` kept them in the model's order
        upstreams.BREAKERS.acquire(candidates[0].upstream, force=True)
        yield 0, candidates[0]


def _attempt(
    ticket: Ticket, outbound: Outbound, candidate: upstreams.Route, index: int, connect: float, read: float
) -> http1.Response | _Failed:
    """One upstream's response head (status < 400), or its failure."""
    upstream = candidate.upstream
    if index == 0 or outbound.call is None:
        prepared = outbound.prepared
    else:
        prepared = _prepare(candidate, outbound.call, dict(outbound.forwarded), outbound.query)
    try:
        headers = {**prepared.headers, **candidate.client.auth_headers()}
    except GatewayError as exc:  # no credential for this upstream (the provider logged why)
        return _Failed(exc, exc.status, None, True, False, "credential")
    try:
        response = upstreams.HTTP.post(prepared.url, headers, prepared.body, connect, read)
    except http1.UpstreamHTTPError as exc:
        error = upstreams.transport_error(upstream, exc)
        return _Failed(error, error.status, None, True, True, type(exc).__name__)
    status = response.status
    if status < 400:
        return response
    first_byte_ms = (time.monotonic() - ticket.info.started) * 1000
    try:
        data = response.read(_MAX_ERROR_BODY)
    except http1.UpstreamHTTPError:
        data = b""
    error = upstreams.error_from_upstream(upstream, status, data, response.headers)
    return _Failed(error, status, first_byte_ms, upstreams.fails_over(status), upstreams.temporary(status), str(status))


def _answer(
    ticket: Ticket,
    candidate: upstreams.Route,
    response: http1.Response,
    failures: list[tuple[upstreams.Route, _Failed]],
) -> Reply:
    _serving(ticket, candidate)
    if failures:
        logs.info(
            "upstream failover",
            upstream=candidate.upstream.name,
            failed=[f"{r.upstream.name}:{f.reason}" for r, f in failures],
        )
    first_byte_ms = (time.monotonic() - ticket.info.started) * 1000
    headers = upstreams.response_headers(response.header_list)
    if ticket.headers:
        headers.extend(ticket.headers.items())
    encoding = response.headers.get("content-encoding")
    return Reply(response, candidate.upstream, response.status, headers, encoding, first_byte_ms)


def _serving(ticket: Ticket, candidate: upstreams.Route) -> None:
    """The ledger row, telemetry and access log name this upstream (the reservation stays as made)."""
    ticket.info.upstream = candidate.upstream.name
    ticket.info.upstream_model = candidate.upstream_model
    annotate(upstream=candidate.upstream.name)


def _client_failure(failures: list[tuple[upstreams.Route, _Failed]]) -> tuple[upstreams.Route, _Failed]:
    """The failure the client hears of: an answer about the request itself; else the last temporary
    one (Claude Code retries it, where a 404 or 502 from a misconfigured upstream it would not); else the last."""
    if not failures[-1][1].fails_over:
        return failures[-1]
    for route, failed in reversed(failures):
        if failed.temporary:
            return route, failed
    return failures[-1]


def read_plain(cfg: Config, ticket: Ticket, reply: Reply) -> Response:
    """A plain reply: read it whole, meter its `usage`, settle, answer."""
    try:
        data = reply.response.read()
    except http1.UpstreamHTTPError as exc:
        error = upstreams.transport_error(reply.upstream, exc)
        settle(cfg, ticket, Usage(), error.status, reply.first_byte_ms)
        raise error from None
    usage = usage_of_body(data, reply.encoding) if ticket.info.endpoint == "messages" else Usage()
    settle(cfg, ticket, usage, reply.status, reply.first_byte_ms)
    return Response(data, status=reply.status, headers=reply.headers)


def relay(cfg: Config, ticket: Ticket, reply: Reply) -> Response:
    """A streamed reply: relayed event by event (`StreamRelay`), settled before its last byte."""
    timing = settings(cfg)
    # The response head came within upstream_ttfb_ms; from now on the
    # allowed silence between two upstream reads is upstream_read_ms.
    scanner = UsageScanner(Usage(), reply.encoding)

    def settle_stream(final_status: int) -> None:
        settle(cfg, ticket, scanner.usage, final_status, reply.first_byte_ms)

    body = StreamRelay(
        reply.response,
        scanner,
        settle_stream,
        status=reply.status,
        ping_seconds=timing.ping_seconds,
        read_seconds=timing.read_seconds,
        drain_seconds=timing.drain_seconds,
    )
    response = Response(body, status=reply.status, headers=reply.headers, direct_passthrough=True)
    # Proxies (and Cloud Run's front end) must pass events through as written.
    response.headers["X-Accel-Buffering"] = "no"
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-cache"
    return response


def settle(cfg: Config, ticket: Ticket, usage: Usage, status: int, first_byte_ms: float | None) -> None:
    """Settle the reservation with what the upstream used and record telemetry (`metering.finish`)."""
    try:
        metering.finish(cfg, ticket, usage, status, first_byte_ms)
    except Exception as exc:  # metering never turns a served reply into an error
        logs.error("metering failed", error=f"{type(exc).__name__}: {exc}")
