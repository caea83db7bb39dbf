"""Which upstream serves a model, and the per-instance client of each upstream.

The route of a model id is derived once per config version (`config.derive`);
each configured upstream gets one client object per instance, rebuilt only when
its config entry changes (so a reload that leaves an upstream alone keeps its
connections and credentials).
"""

from __future__ import annotations

import threading

from common import config
from common.config import Config, Upstream
from common.core import models
from common.core.errors import GatewayError
from common.proxy.upstreams.anthropic import AnthropicClient
from common.proxy.upstreams.base import Client, Route, strip_suffix
from common.proxy.upstreams.vertex import VertexClient

_clients: dict[str, tuple[Upstream, Client]] = {}
_clients_lock = threading.Lock()


def client_for(upstream: Upstream) -> Client:
    """The per-instance client of an upstream (rebuilt when its config entry changes)."""
    hit = _clients.get(upstream.name)
    if hit is not None and (hit[0] is upstream or hit[0] == upstream):
        return hit[1]
    with _clients_lock:
        client: Client
        if upstream.provider == "vertex":
            client = VertexClient(upstream)
        elif upstream.provider == "anthropic":
            client = AnthropicClient(upstream)
        else:  # config checks refuse other providers; this is defence in depth
            raise GatewayError(500, f"Upstream {upstream.name!r} has an unknown provider.", "api_error")
        _clients[upstream.name] = (upstream, client)
        return client


class _Routes:
    """The routes of one config version, found on first use per model id."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.found: dict[str, tuple[Upstream, str] | None] = {}

    def lookup(self, model_id: str) -> tuple[Upstream, str] | None:
        try:
            return self.found[model_id]
        except KeyError:
            pass
        hit = _find_route(self.cfg, model_id)
        if len(self.found) < 4096:  # client-chosen ids: bounded
            self.found[model_id] = hit
        return hit


def route(cfg: Config, model_id: str) -> Route:
    """The first upstream that serves `model_id`, and the id to send it."""
    hit = config.derive(cfg, _Routes).lookup(model_id)
    if hit is None:
        served = sorted({m.id for m in cfg.models})
        hint = f" Configured models: {', '.join(served)}." if served else ""
        raise GatewayError(400, f"No upstream of this gateway serves the model '{model_id}'.{hint}")
    upstream, upstream_model = hit
    return Route(upstream, client_for(upstream), upstream_model)


def _find_route(cfg: Config, model_id: str) -> tuple[Upstream, str] | None:
    """The first upstream serving `model_id` and the id it is sent as.

    `models[].upstream_model` wins; otherwise a Vertex upstream gets the
    catalogue's Vertex id (`claude-sonnet-4-5@20250929` for any spelling the
    client sends), an Anthropic upstream the client's id. A catalogue model
    that Vertex does not serve falls through to the next upstream, or is a 400
    that names the model and the fix.
    """
    configured = models.find(cfg.models, model_id)
    canonical = models.canonical(model_id)
    known = models.lookup(model_id)
    not_on_vertex: Upstream | None = None
    for upstream in cfg.upstreams:
        if configured is not None and upstream.name in configured.upstream_model:
            return upstream, configured.upstream_model[upstream.name]
        if any(models.entry_matches(pattern, canonical) for pattern in upstream.models):
            if upstream.provider == "vertex" and known is not None:
                if known.vertex_id is None:
                    not_on_vertex = not_on_vertex or upstream
                    continue
                return upstream, known.vertex_id
            return upstream, strip_suffix(model_id)
    if not_on_vertex is not None and known is not None:
        raise GatewayError(
            400,
            f"The model '{model_id}' ({known.display_name}) is not available on Vertex AI, which is this "
            f"gateway's upstream '{not_on_vertex.name}'. Choose another model; or an operator adds an Anthropic "
            "upstream that serves it, or maps it under models[].upstream_model in gateway.yaml.",
        )
    return None
