"""`GET /managed/settings`: the caller's policy as Claude Code's managed settings.

The policy is the one `common.policy.resolve` picks for the caller's groups
(first match, catch-all last): the same resolution inference enforces, so the
`availableModels` Claude Code shows are the models the gateway lets through.
The answer is `{"uuid","checksum","settings"}` with `checksum` computed the way
Claude Code computes the `If-None-Match` of its next poll (`common.core.checksum`),
served quoted as `ETag`; `304` only for a matching `If-None-Match`; `404` when
no policy applies. Every policy's response is built once per config version
(`config.derive`), so a poll costs a token check and a lookup.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from flask import Request, Response

from common import config
from common.auth import sessions
from common.config import Config
from common.core import checksum
from common.core.errors import GatewayError
from common.policy import hints
from common.policy.resolution import policy_name, resolve

# uuid5 namespace of served policies: a policy's uuid is stable while its name
# and content are, and changes with them.
_NAMESPACE = uuid.UUID("6f1d3c1e-6a43-4c55-9a8e-2b7d35b0c6a1")
_HEADERS = {"Cache-Control": "private, no-cache", "Vary": "Authorization"}


@dataclass(frozen=True, slots=True)
class Served:
    """One policy's response: computed once per config."""

    uuid: str
    checksum: str
    settings: dict[str, Any]
    body: bytes

    @property
    def etag(self) -> str:
        return f'"{self.checksum}"'


def client_env(cfg: Config) -> dict[str, str]:
    """Env that turns on Claude Code's OTLP export through this gateway (empty without `forward_to`).

    The same variables Anthropic's own gateway pushes: the client then sends
    its metrics/logs/traces to `{public_url}/v1/*`, where the relay stamps the
    verified identity. A policy's own `env` entries win over these.
    """
    destinations = cfg.telemetry.forward_to
    if not destinations or not cfg.telemetry.push_client_env:
        return {}

    def exporter(signal: str) -> str:
        return "otlp" if any(getattr(d, signal) for d in destinations) else "none"

    return {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": exporter("metrics"),
        "OTEL_LOGS_EXPORTER": exporter("logs"),
        "OTEL_TRACES_EXPORTER": exporter("traces"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": cfg.public_url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }


def effective_settings(cfg: Config, index: int) -> dict[str, Any]:
    """The settings served for `managed.policies[index]`, as plain JSON values."""
    chosen = cfg.managed.policies[index]
    settings: dict[str, Any] = checksum.plain(dict(chosen.settings), f"managed.policies[{index}].settings")
    pushed = client_env(cfg)
    if pushed:
        own = settings.get("env")
        settings["env"] = {**pushed, **(own if isinstance(own, dict) else {})}
    return settings


def _build(cfg: Config, index: int) -> Served:
    settings = effective_settings(cfg, index)
    digest = checksum.checksum(settings)
    name = policy_name(index, cfg.managed.policies[index])
    ident = str(uuid.uuid5(_NAMESPACE, f"{name}\n{digest}"))
    body = f'{{"uuid":"{ident}","checksum":"{digest}","settings":{checksum.dumps(settings)}}}'
    return Served(ident, digest, settings, body.encode("utf-8", "surrogatepass"))


def _served_policies(cfg: Config) -> tuple[Served, ...]:
    # Every policy at once: config checks already proved each settings block is JSON.
    return tuple(_build(cfg, index) for index in range(len(cfg.managed.policies)))


def served_for(cfg: Config, groups: tuple[str, ...] | list[str]) -> Served | None:
    """The response for a caller with `groups`; None when no policy applies."""
    found = resolve(cfg, groups)
    if found is None:
        return None
    return config.derive(cfg, _served_policies)[found[0]]


def if_none_match(header: str | None, checksum: str) -> bool:
    """Does an If-None-Match header name our entity tag?

    Weak comparison (RFC 9110 §13.1.2), any entry of a list. `*` is NOT a match
    here: Claude Desktop sends `If-None-Match: *` only to ask whether settings
    exist, and the contract says to answer it as if the header were absent.
    """
    if not header:
        return False
    for raw in _split_tags(header):
        tag = raw.strip()
        if tag.startswith(("W/", "w/")):
            tag = tag[2:].strip()
        if len(tag) >= 2 and tag[0] == '"' and tag[-1] == '"':
            tag = tag[1:-1]
        if tag and tag == checksum:
            return True
    return False


def _split_tags(header: str) -> list[str]:
    """Split a list of entity tags on commas outside quotes."""
    tags: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            tags.append("".join(current))
            current = []
        else:
            current.append(ch)
    tags.append("".join(current))
    return tags


def settings(request: Request) -> Response:
    cfg = config.current()
    identity = sessions.authenticate(request, cfg)
    served = served_for(cfg, identity.groups)
    if served is None:
        raise GatewayError(
            404,
            "No managed settings apply to this account (no policy in gateway.yaml matches its groups).",
            "not_found_error",
            headers=_HEADERS,
        )
    found = resolve(cfg, identity.groups)
    hints.record(served.checksum, policy_name(*found) if found else "")
    headers = {**_HEADERS, "ETag": served.etag}
    if if_none_match(request.headers.get("If-None-Match"), served.checksum):
        return Response(status=304, headers=headers)
    return Response(served.body, status=200, headers=headers, content_type="application/json")


def _current_checksums(cfg: Config) -> frozenset[str]:
    return frozenset(s.checksum for s in config.derive(cfg, _served_policies))


def settings_check(cfg: Config, groups: tuple[str, ...] | list[str], header: str | None) -> str | None:
    """The verdict on a model request's `x-claude-code-managed-settings-checksum` (never the value itself).

    `match`: a checksum of this config's policies or one `hints.recently_served`
    still accepts (served lately, or replaced too recently for every machine to
    have polled again; the rule is in `policy.hints`); `unknown`: another value; `missing`: none sent although
    the caller's policy pushes `CLAUDE_CODE_GATEWAY_HINT_HEADERS`; None: none sent
    and none asked for. In memory: no round trip but a per-minute refresh.
    """
    value = hints.normalise(header)
    if value is None:
        served = served_for(cfg, groups)
        env = served.settings.get("env") if served is not None else None
        asked = isinstance(env, dict) and str(env.get(hints.HINT_ENV, "")).strip().lower() in ("1", "true")
        return "missing" if asked else None
    if len(value) > hints.MAX_HEADER_CHARS:
        return "unknown"
    if value in _current_checksums(cfg) or value in hints.recently_served():
        return "match"
    return "unknown"
