"""Which upstreams serve a model, in failover order, and the per-instance client of each upstream.

The routes of a model id are derived once per config version (`config.derive`);
the circuit breakers (`breaker`) reorder them per request;
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
from common.proxy.upstreams.breaker import BREAKERS
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
        self.found: dict[str, tuple[tuple[Upstream, str], ...]] = {}

    def lookup(self, model_id: str) -> tuple[tuple[Upstream, str], ...]:
        try:
            return self.found[model_id]
        except KeyError:
            pass
        hit = _find_routes(self.cfg, model_id)
        if len(self.found) < 4096:  # client-chosen ids: bounded
            self.found[model_id] = hit
        return hit


def route(cfg: Config, model_id: str) -> Route:
    """The first upstream (in config order) that serves `model_id`, and the id to send it."""
    return _routes_in_config_order(cfg, model_id)[0]


def routes(cfg: Config, model_id: str) -> tuple[Route, ...]:
    """Every upstream serving `model_id`, in the order to try them (400 if none).

    The model's failover order (`models[].upstreams`, or config order), with
    the upstreams whose circuit breaker is open and cooling down moved last:
    they are tried only if nothing else is left (`breaker.Breakers.acquire`).
    """
    found = _routes_in_config_order(cfg, model_id)
    if len(found) == 1:
        return found
    ready = [r for r in found if BREAKERS.available(r.upstream)]
    if len(ready) == len(found):
        return found
    return (*ready, *(r for r in found if r not in ready))


def _routes_in_config_order(cfg: Config, model_id: str) -> tuple[Route, ...]:
    hits = config.derive(cfg, _Routes).lookup(model_id)
    if not hits:
        served = sorted({m.id for m in cfg.models})
        hint = f" Configured models: {', '.join(served)}." if served else ""
        raise GatewayError(400, f"No upstream of this gateway serves the model '{model_id}'.{hint}")
    return tuple(Route(upstream, client_for(upstream), upstream_model) for upstream, upstream_model in hits)


def _find_routes(cfg: Config, model_id: str) -> tuple[tuple[Upstream, str], ...]:
    """The upstreams serving `model_id`, in failover order, each with the id it is sent as.

    The order is `models[].upstreams` when the model's entry has one;
    otherwise every upstream, in config order, that has an
    `models[].upstream_model` entry for the model or one of whose `models`
    globs matches it. The id sent: the `upstream_model` entry; otherwise a
    Vertex upstream gets the catalogue's Vertex id
    (`claude-sonnet-4-5@20250929` for any spelling the client sends), an
    Anthropic upstream the client's id. A catalogue model that Vertex does not
    serve skips Vertex upstreams, and is a 400 that names the model and the fix
    when nothing else serves it.
    """
    configured = models.find(cfg.models, model_id)
    canonical = models.canonical(model_id)
    known = models.lookup(model_id)
    mapped = configured.upstream_model if configured is not None else {}
    if configured is not None and configured.upstreams is not None:
        by_name = {upstream.name: upstream for upstream in cfg.upstreams}
        candidates = [by_name[name] for name in configured.upstreams if name in by_name]
    else:
        candidates = [
            upstream
            for upstream in cfg.upstreams
            if upstream.name in mapped or any(models.entry_matches(p, canonical) for p in upstream.models)
        ]
    found: list[tuple[Upstream, str]] = []
    not_on_vertex: Upstream | None = None
    for upstream in candidates:
        if upstream.name in mapped:
            found.append((upstream, mapped[upstream.name]))
        elif upstream.provider == "vertex" and known is not None:
            if known.vertex_id is None:
                not_on_vertex = not_on_vertex or upstream
                continue
            found.append((upstream, known.vertex_id))
        else:
            found.append((upstream, strip_suffix(model_id)))
    if not found and not_on_vertex is not None and known is not None:
        raise GatewayError(
            400,
            f"The model '{model_id}' ({known.display_name}) is not available on Vertex AI, which is this "
            f"gateway's upstream '{not_on_vertex.name}'. Choose another model; or an operator adds an Anthropic "
            "upstream that serves it, or maps it under models[].upstream_model in gateway.yaml.",
        )
    return tuple(found)
