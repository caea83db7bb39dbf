"""The inference endpoints: `/v1/messages`, `/v1/messages/count_tokens`, `/v1/models`.

Per request, in this order: verify the bearer (`sessions.authenticate`), read
and type-check the body, resolve the caller's policy (first match wins),
refuse a model the policy does not allow (400) and a denied tool (403, or strip
it), take the billing group from `tags` (and drop `tags`), route the model to
the first upstream that serves it, reserve spend (`metering.begin`, may be a
429), call the upstream over a pooled keep-alive connection, and relay its
reply: whole when plain, event by event when streamed (`common.sse`). The
upstream's usage is metered once, after its last byte (`metering.finish`).
Nothing here imports lazily or parses config per request: the hot path is a
handful of dict lookups, one JSON decode, one JSON encode and the upstream call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from flask import Request, Response

from common import config
from common.auth import sessions
from common.config import Config, Policy
from common.core import catalog, logs, models
from common.core.errors import GatewayError
from common.core.identity import Identity
from common.core.usage import RequestInfo, Usage
from common.http.app import json_response, read_json_body
from common.policy import rules as policy
from common.proxy import http1, metering, upstreams
from common.proxy.metering import Ticket
from common.proxy.sse import StreamRelay, UsageScanner, usage_of_body

_MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Settings:
    """Per-config values derived once (not per request)."""

    cfg: Config
    connect_seconds: float
    ttfb_seconds: float
    plain_seconds: float
    read_seconds: float
    ping_seconds: float
    drain_seconds: float
    billing_tag: str | None


_settings_cache: list[_Settings] = []


def _settings(cfg: Config) -> _Settings:
    if _settings_cache and _settings_cache[0].cfg is cfg:
        return _settings_cache[0]
    t = cfg.timeouts
    connect = t.upstream_connect_ms / 1000
    settings = _Settings(
        cfg=cfg,
        connect_seconds=connect,
        ttfb_seconds=t.upstream_ttfb_ms / 1000,
        plain_seconds=max(t.upstream_ttfb_ms, t.upstream_read_ms) / 1000,
        read_seconds=t.upstream_read_ms / 1000,
        ping_seconds=t.ping_interval_ms / 1000,
        drain_seconds=t.drain_after_disconnect_ms / 1000,
        billing_tag=cfg.admin.billing_group_tag if cfg.admin else None,
    )
    _settings_cache[:] = [settings]
    return settings


# --- request checks ---------------------------------------------------------------


def _policy_of(cfg: Config, identity: Identity) -> tuple[int, Policy] | None:
    """The caller's policy; None when no policies are configured (everything allowed)."""
    if not cfg.managed.policies:
        return None
    found = policy.resolve(cfg, identity.groups)
    if found is None:
        raise GatewayError(
            403,
            "No gateway policy applies to your groups, so you may not use models through this gateway; "
            "ask an administrator to add your group to managed.policies.",
            "permission_error",
        )
    return found


def _check_model(cfg: Config, found: tuple[int, Policy] | None, model: str) -> None:
    if found is None:
        return
    index, pol = found
    if policy.model_allowed(pol, model):
        return
    allowed = policy.allowed_models(cfg, pol) or list(policy.available_entries(pol) or [])
    raise GatewayError(
        400,
        f"The model '{model}' is not allowed for you by the gateway's policy '{policy.policy_name(index, pol)}'. "
        f"Allowed models: {', '.join(allowed) if allowed else 'none'}.",
        "invalid_request_error",
    )


def _checked_body(request: Request, cfg: Config, endpoint: str) -> tuple[dict[str, Any], str, bool]:
    body = read_json_body(request, cfg.limits.max_request_bytes)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(400, "model: expected a string naming the model (for example claude-sonnet-4-5).")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise GatewayError(400, "messages: expected a list of messages.")
    stream = body.get("stream", False)
    if endpoint == "messages" and not isinstance(stream, bool):
        raise GatewayError(400, "stream: expected true or false.")
    return body, model, bool(stream) if endpoint == "messages" else False


def _billing_group(settings: _Settings, identity: Identity, body: dict[str, Any]) -> str | None:
    """The group named by the request's `tags` (if the caller belongs to it); `tags` is removed."""
    tags = body.pop("tags", None)
    tag = settings.billing_tag
    if tag is None or not isinstance(tags, dict):
        return None
    wanted = tags.get(tag)
    if not isinstance(wanted, str):
        return None
    for group in identity.groups:
        if group.lower() == wanted.lower():
            return group
    logs.info("request tag names a group the caller is not in; ignored", tag=tag, group=wanted)
    return None


# --- handlers ------------------------------------------------------------------------


def messages(request: Request) -> Response:
    return _inference(request, "messages")


def count_tokens(request: Request) -> Response:
    return _inference(request, "count_tokens")


def _inference(request: Request, endpoint: str) -> Response:
    cfg = config.current()
    settings = _settings(cfg)
    identity = sessions.authenticate(request, cfg)
    body, model, stream = _checked_body(request, cfg, endpoint)
    found = _policy_of(cfg, identity)
    _check_model(cfg, found, model)
    if found is not None:
        stripped = policy.apply_tools(found[0], found[1], body)
        if stripped:
            logs.info("tools removed by policy", tools=stripped, policy=policy.policy_name(*found))
    billing_group = _billing_group(settings, identity, body)
    route = upstreams.route(cfg, model)
    client = route.client
    query = request.query_string.decode("latin-1")
    headers = upstreams.forward_headers(request.headers)
    headers["content-type"] = "application/json"  # the body is re-encoded as JSON
    if endpoint == "messages":
        prepared = client.messages(route.upstream_model, body, stream, headers, query)
    else:
        prepared = client.count_tokens(route.upstream_model, body, headers, query)
    headers.update(client.auth_headers())  # may be a 502 (no credential): before any reservation
    max_tokens = body.get("max_tokens")
    ticket = metering.begin(
        cfg,
        RequestInfo(
            identity=identity,
            model=models.canonical(model),
            upstream=route.upstream.name,
            upstream_model=route.upstream_model,
            endpoint=endpoint,
            stream=stream,
            billing_group=billing_group,
            max_tokens=max_tokens if isinstance(max_tokens, int) else 0,
            input_bytes=len(prepared.body),
            request_id=logs.current_request_id(),
        ),
    )
    return _proxy(cfg, settings, ticket, route, prepared, stream)


def _finish(cfg: Config, ticket: Ticket, usage: Usage, status: int, first_byte_ms: float | None) -> None:
    try:
        metering.finish(cfg, ticket, usage, status, first_byte_ms)
    except Exception as exc:  # metering never turns a served reply into an error
        logs.error("metering failed", error=f"{type(exc).__name__}: {exc}")


def _proxy(
    cfg: Config,
    settings: _Settings,
    ticket: Ticket,
    route: upstreams.Route,
    prepared: upstreams.Prepared,
    stream: bool,
) -> Response:
    try:
        upstream_response = upstreams.HTTP.post(
            prepared.url,
            prepared.headers,
            prepared.body,
            settings.connect_seconds,
            settings.ttfb_seconds if stream else settings.plain_seconds,
        )
    except http1.UpstreamHTTPError as exc:
        error = upstreams.transport_error(route.upstream, exc)
        _finish(cfg, ticket, Usage(), error.status, None)
        raise error from None
    first_byte_ms = (time.monotonic() - ticket.info.started) * 1000
    status = upstream_response.status
    response_headers = upstream_response.headers
    if status >= 400:
        try:
            data = upstream_response.read(_MAX_ERROR_BODY)
        except http1.UpstreamHTTPError:
            data = b""
        _finish(cfg, ticket, Usage(), status, first_byte_ms)
        raise upstreams.error_from_upstream(route.upstream, status, data, response_headers)
    headers = upstreams.response_headers(upstream_response.header_list)
    if ticket.headers:
        headers.extend(ticket.headers.items())
    encoding = response_headers.get("content-encoding")

    if not stream:
        try:
            data = upstream_response.read()
        except http1.UpstreamHTTPError as exc:
            error = upstreams.transport_error(route.upstream, exc)
            _finish(cfg, ticket, Usage(), error.status, first_byte_ms)
            raise error from None
        usage = usage_of_body(data, encoding) if ticket.info.endpoint == "messages" else Usage()
        _finish(cfg, ticket, usage, status, first_byte_ms)
        return Response(data, status=status, headers=headers)

    # The response headers came within upstream_ttfb_ms; from now on the
    # allowed silence between two upstream reads is upstream_read_ms.
    scanner = UsageScanner(Usage(), encoding)

    def settle(final_status: int) -> None:
        _finish(cfg, ticket, scanner.usage, final_status, first_byte_ms)

    relay = StreamRelay(
        upstream_response,
        scanner,
        settle,
        status=status,
        ping_seconds=settings.ping_seconds,
        read_seconds=settings.read_seconds,
        drain_seconds=settings.drain_seconds,
    )
    response = Response(relay, status=status, headers=headers, direct_passthrough=True)
    # Proxies (and Cloud Run's front end) must pass events through as written.
    response.headers["X-Accel-Buffering"] = "no"
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-cache"
    return response


# --- models ------------------------------------------------------------------------


def _model_object(cfg: Config, model_id: str) -> dict[str, Any]:
    entry = models.find(cfg.models, model_id)
    name = entry.display_name if entry is not None and entry.display_name else models.display_name(model_id)
    return {"type": "model", "id": model_id, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}


def _listable(cfg: Config) -> list[str]:
    """Every model an upstream of this config serves: gateway.yaml `models:` in their
    order, then the catalogue's, newest first. Not a `config.derive` builder: routing
    derives its own table, and a builder that derives again would deadlock."""
    seen = {models.canonical(m.id) for m in cfg.models}
    listed = [m.id for m in cfg.models]
    for known in reversed(catalog.MODELS):
        if known.id in seen:
            continue
        try:
            upstreams.route(cfg, known.id)
        except GatewayError:  # no upstream serves it (e.g. a model Vertex does not offer)
            continue
        listed.append(known.id)
    return listed


def _visible_models(cfg: Config, identity: Identity) -> list[str]:
    found = _policy_of(cfg, identity)
    listed = _listable(cfg)  # ~24 cached route lookups; /v1/models is not on the hot path
    if found is None:
        return listed
    return [model_id for model_id in listed if policy.model_allowed(found[1], model_id)]


def list_models(request: Request) -> Response:
    cfg = config.current()
    identity = sessions.authenticate(request, cfg)
    data = [_model_object(cfg, model_id) for model_id in _visible_models(cfg, identity)]
    return json_response(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


def get_model(request: Request) -> Response:
    cfg = config.current()
    identity = sessions.authenticate(request, cfg)
    wanted = unquote(request.path.rstrip("/").removeprefix("/v1/models").lstrip("/"))
    for model_id in _visible_models(cfg, identity):
        if models.canonical(model_id) == models.canonical(wanted):
            return json_response(_model_object(cfg, model_id))
    raise GatewayError(404, f"The model '{wanted}' is not available to you on this gateway.", "not_found_error")
