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

import time
from dataclasses import dataclass
from typing import Any

import msgspec
from flask import Request, Response

from common import config, policy
from common.config import Config, Upstream
from common.core import logs, models
from common.core.errors import GatewayError
from common.core.identity import Identity
from common.core.usage import RequestInfo, Usage
from common.http import annotate, read_json_body
from common.proxy import http1, metering, upstreams
from common.proxy.metering import Ticket
from common.proxy.relay import StreamRelay
from common.proxy.sse import UsageScanner, usage_of_body

_MAX_ERROR_BODY = 64 * 1024

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
    except RecursionError:
        raise ValueError("nested too deeply") from None


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


@dataclass(frozen=True, slots=True)
class Outbound:
    """Where the call goes and the request that goes there."""

    route: upstreams.Route
    prepared: upstreams.Prepared


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
    messages = body.get("messages")
    if not _is_array(messages):
        raise GatewayError(400, "messages: expected a list of messages.")
    stream = value(body, "stream", False)
    if endpoint == "messages" and not isinstance(stream, bool):
        raise GatewayError(400, "stream: expected true or false.")
    return Call(endpoint, body, model, bool(stream) if endpoint == "messages" else False)


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
    """The first upstream serving the model (400 if none) and the request for it, with its credential (502)."""
    found = upstreams.route(cfg, call.model)
    annotate(upstream=found.upstream.name, model=models.canonical(call.model))  # for the access-log line
    client = found.client
    query = request.query_string.decode("latin-1")
    headers = upstreams.forward_headers(request.headers)
    headers["content-type"] = "application/json"  # the body is re-encoded as JSON
    if call.endpoint == "messages":
        prepared = client.messages(found.upstream_model, call.body, call.stream, headers, query)
    else:
        prepared = client.count_tokens(found.upstream_model, call.body, headers, query)
    headers.update(client.auth_headers())  # may be a 502 (no credential): before any reservation
    return Outbound(found, prepared)


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
        ),
    )


def send(cfg: Config, ticket: Ticket, outbound: Outbound) -> Reply:
    """POST to the upstream and wait for its response head.

    A transport failure or an error reply is settled (nothing used) and raised
    as the client's error (`upstreams.transport_error` / `error_from_upstream`).
    """
    timing = settings(cfg)
    upstream = outbound.route.upstream
    prepared = outbound.prepared
    try:
        response = upstreams.HTTP.post(
            prepared.url,
            prepared.headers,
            prepared.body,
            timing.connect_seconds,
            timing.ttfb_seconds if ticket.info.stream else timing.plain_seconds,
        )
    except http1.UpstreamHTTPError as exc:
        error = upstreams.transport_error(upstream, exc)
        settle(cfg, ticket, Usage(), error.status, None)
        raise error from None
    first_byte_ms = (time.monotonic() - ticket.info.started) * 1000
    status = response.status
    if status >= 400:
        try:
            data = response.read(_MAX_ERROR_BODY)
        except http1.UpstreamHTTPError:
            data = b""
        settle(cfg, ticket, Usage(), status, first_byte_ms)
        raise upstreams.error_from_upstream(upstream, status, data, response.headers)
    headers = upstreams.response_headers(response.header_list)
    if ticket.headers:
        headers.extend(ticket.headers.items())
    return Reply(response, upstream, status, headers, response.headers.get("content-encoding"), first_byte_ms)


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
