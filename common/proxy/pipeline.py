"""The inference endpoints: `/v1/messages`, `/v1/messages/count_tokens`, `/v1/models`.

`_inference` is one request's whole path, one named step per line (the steps
are in `steps`): the bearer, the body, the caller's policy, the upstream,
the spend reservation, the upstream call, then the reply relayed event by
event (`relay`) or read whole (`read_plain`), settled once after its last
byte. The hot path is a handful of dict lookups, one JSON decode, one JSON
encode and the upstream call: nothing imports lazily or parses config per request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from flask import Request, Response

from common import config, policy
from common.auth import sessions
from common.config import Config, Policy
from common.core import catalog, models
from common.core.errors import GatewayError
from common.core.identity import Identity
from common.http import json_response
from common.proxy import steps, upstreams


def messages(request: Request) -> Response:
    return _inference(request, "messages")


def count_tokens(request: Request) -> Response:
    return _inference(request, "count_tokens")


def _inference(request: Request, endpoint: str) -> Response:
    """One request, step by step; a step that refuses raises the client's error."""
    cfg = config.current()
    identity = sessions.authenticate(request, cfg)  # 401
    call = steps.check_body(request, cfg, endpoint)  # 400, 411, 413
    steps.apply_policy(cfg, identity, call)  # 403 no policy or a denied tool, 400 a denied model
    outbound = steps.route(request, cfg, call)  # 400 no upstream serves the model
    ticket = steps.reserve(cfg, identity, call, outbound)  # 429 at a spend cap
    # From here every way out settles the reservation exactly once.
    reply = steps.send(cfg, ticket, outbound)  # fails over across upstreams; then the error, mapped; 502/504
    if call.stream:
        return steps.relay(cfg, ticket, reply)  # settles just before the last event
    return steps.read_plain(cfg, ticket, reply)


def _policy_of(cfg: Config, identity: Identity) -> tuple[int, Policy] | None:
    """The caller's policy as inference enforces it: `/v1/models` lists what it allows."""
    return policy.for_inference(cfg, identity.groups)


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
