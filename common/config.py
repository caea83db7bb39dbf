"""gateway.yaml: schema, loading, secret references, validation and reload.

The schema is a tree of msgspec Structs (msgspec imports in a few ms; cold
start counts). `load()` reads YAML from a path or a Secret Manager secret,
expands `${ENV}`, `${file:/abs}` and `${secret:projects/…}` references, converts
the result against the schema and then applies the cross-field rules of
CONFIG.md. Every failure is a `ConfigError` whose lines name the key path, the
bad value and the fix. `current()` serves the per-instance cached config and
re-reads its source when it changes (see `ConfigSource`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml

from common import logs

MIB = 1024 * 1024


class ConfigError(Exception):
    """gateway.yaml is unusable; `problems` holds one line per fault."""

    def __init__(self, problems: list[str], source: str = "gateway.yaml") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source} is invalid:\n" + "\n".join(f"  - {p}" for p in problems))


class _Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


# --- the schema (CONFIG.md; keys marked "ours" there are our additions) ---------


class Listen(_Base, frozen=True):
    public_url: str | None = None
    trusted_proxies: list[str] = []


class AccessControl(_Base, frozen=True):
    allow_cidrs: list[str] = []
    deny_cidrs: list[str] = []


class Limits(_Base, frozen=True):
    max_request_bytes: int = 32 * MIB


class Timeouts(_Base, frozen=True):
    upstream_connect_ms: int = 10_000
    upstream_ttfb_ms: int = 120_000
    upstream_read_ms: int = 600_000  # silence allowed between two upstream events
    ping_interval_ms: int = 10_000  # our own `event: ping` after this much silence
    drain_after_disconnect_ms: int = 300_000  # keep reading upstream for usage


class RateLimit(_Base, frozen=True):
    max: int
    window_seconds: int


class RateLimits(_Base, frozen=True):
    device_authorization: RateLimit = RateLimit(max=30, window_seconds=600)
    device_verify: RateLimit = RateLimit(max=10, window_seconds=600)
    token: RateLimit = RateLimit(max=600, window_seconds=600)


class GoogleGroups(_Base, frozen=True):
    admin_email: str | None = None  # domain-wide delegation subject
    customer: str = "my_customer"
    endpoint: str = "https://admin.googleapis.com"  # tests point at a stand-in


class Oidc(_Base, frozen=True):
    issuer: str
    client_id: str
    client_secret: str | None = None
    scopes: list[str] = msgspec.field(default_factory=lambda: ["openid", "profile", "email"])
    extra_auth_params: dict[str, str] = {}
    groups_claim: str = "groups"
    email_claim: str = "email"
    user_id_claim: str = "sub"
    allowed_email_domains: list[str] = []
    allowed_groups: list[str] = []
    google_groups: GoogleGroups | None = None
    userinfo_fallback: bool = False
    require_email_verified: bool = True


class Session(_Base, frozen=True):
    jwt_secret: str | list[str]
    ttl_hours: float = 1.0
    refresh_ttl_days: float = 30.0
    audience: str = "claude-gateway"
    # (ours) how stale an instance's list of revoked sessions may be, in seconds
    revocation_cache_seconds: float = 5.0

    @property
    def secrets(self) -> list[str]:
        return [self.jwt_secret] if isinstance(self.jwt_secret, str) else list(self.jwt_secret)


class Device(_Base, frozen=True):
    """(ours) the device flow's timings."""

    code_ttl_seconds: int = 600
    interval_seconds: int = 5


class CloudSql(_Base, frozen=True):
    instance: str
    user: str
    database: str = "gateway"
    ip_type: Literal["private", "public", "psc"] = "private"


class Store(_Base, frozen=True):
    postgres_url: str | None = None
    cloud_sql: CloudSql | None = None
    max_connections: int = 5
    connect_timeout_seconds: float = 5.0


class Upstream(_Base, frozen=True):
    name: str
    provider: str
    base_url: str | None = None
    project_id: str | None = None
    region: str | None = None
    auth: dict[str, str] = {}
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    anthropic_version: str = "vertex-2023-10-16"


class Model(_Base, frozen=True):
    id: str
    display_name: str | None = None
    upstream_model: dict[str, str] = {}


class Match(_Base, frozen=True):
    groups: list[str] = []


class Tools(_Base, frozen=True):
    allow: list[str] = []  # empty = every tool not denied
    deny: list[str] = []
    mode: Literal["reject", "strip"] = "reject"


class Policy(_Base, frozen=True):
    name: str | None = None
    match: Match | None = None
    settings: dict[str, Any] = {}
    tools: Tools = Tools()

    @property
    def is_catch_all(self) -> bool:
        return self.match is None or not self.match.groups


class Managed(_Base, frozen=True):
    policies: list[Policy] = []


class AdminKey(_Base, frozen=True):
    id: str
    key: str


class Admin(_Base, frozen=True):
    read_keys: list[AdminKey] = []
    write_keys: list[AdminKey] = []
    admin_groups: list[str] = []
    billing_group_tag: str | None = None
    group_limit_mode: Literal["min", "max"] = "min"


class Enforcement(_Base, frozen=True):
    fail_closed_on_error: bool = False
    reservation_ttl_seconds: int = 900  # reservations of crashed requests expire


class PricingOverride(_Base, frozen=True):
    model: str
    input: float
    output: float
    upstream: str | None = None
    cache_read: float | None = None
    cache_write: float | None = None  # 5-minute write; the 1-hour write is 2x input
    cache_write_1h: float | None = None


class Pricing(_Base, frozen=True):
    multiplier: float = 1.0
    overrides: list[PricingOverride] = []


class Collector(_Base, frozen=True):
    endpoint: str
    headers: dict[str, str] = {}


class ForwardTo(_Base, frozen=True):
    url: str
    metrics: bool = True
    logs: bool = False
    traces: bool = False
    headers: dict[str, str] = {}


class Telemetry(_Base, frozen=True):
    collector: Collector | None = None
    forward_to: list[ForwardTo] = []
    resource_attributes: dict[str, str] = {}
    flush_timeout_ms: int = 500
    temporality: Literal["delta", "cumulative"] = "delta"
    # (ours) a request flushes the gateway's metrics only if the last flush is
    # older than this; 0 flushes on every request (see docs/telemetry.md).
    flush_interval_ms: int = 5000
    forward_timeout_ms: int = 5000  # (ours) budget to forward one relayed export
    relay_max_bytes: int = 8 * MIB  # (ours) largest relayed export, after decompression
    push_client_env: bool = True  # (ours) with forward_to set, managed settings turn on Claude Code's OTLP export


class Local(_Base, frozen=True):
    """(ours) marks a configuration made for a local run; `make token` needs it."""

    enabled: bool = False


class Config(_Base, frozen=True):
    oidc: Oidc
    session: Session
    upstreams: list[Upstream]
    listen: Listen = Listen()
    access_control: AccessControl = AccessControl()
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    rate_limits: RateLimits = RateLimits()
    device: Device = Device()
    store: Store = Store()
    models: list[Model] = []
    managed: Managed = Managed()
    admin: Admin | None = None
    enforcement: Enforcement | None = None
    pricing: Pricing | None = None
    telemetry: Telemetry = Telemetry()
    login_notice: str | None = None
    config_refresh_seconds: int = 300
    local: Local = Local()

    @property
    def public_url(self) -> str:
        return (self.listen.public_url or "http://127.0.0.1:8080").rstrip("/")

    @property
    def is_local(self) -> bool:
        return self.local.enabled and is_loopback_url(self.public_url)


# --- references: ${ENV}, ${file:/abs}, ${secret:projects/…} ----------------------

_REF = re.compile(r"\$\{([^}]*)\}")


def _secret_access(name: str) -> str:
    """Read a Secret Manager version with the function's own identity."""
    from common import secrets  # lazy: the client library is heavy

    return secrets.access(name)


def _expand(value: Any, path: str, problems: list[str], resolve_secret: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, _join(path, str(k)), problems, resolve_secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", problems, resolve_secret) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def one(match: re.Match[str]) -> str:
        ref = match.group(1).strip()
        if ref.startswith("file:"):
            file_path = ref[5:]
            if not os.path.isabs(file_path):
                problems.append(f"{path}: '${{{ref}}}' must name an absolute path")
                return ""
            try:
                with open(file_path, encoding="utf-8") as handle:
                    return handle.read().strip()
            except OSError as exc:
                problems.append(f"{path}: cannot read '{file_path}' ({exc.strerror}); create the file or fix the path")
                return ""
        if ref.startswith("secret:"):
            name = ref[7:]
            if not re.fullmatch(r"projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?", name):
                problems.append(
                    f"{path}: '{name}' is not a secret version name; write "
                    "projects/PROJECT/secrets/SECRET/versions/VERSION"
                )
                return ""
            try:
                return resolve_secret(name)
            except Exception as exc:  # any failure of the API is the operator's to fix
                problems.append(
                    f"{path}: cannot read secret '{name}' ({type(exc).__name__}: {exc}); "
                    "check the secret exists and the service account has "
                    "roles/secretmanager.secretAccessor on it"
                )
                return ""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ref):
            problems.append(
                f"{path}: '${{{ref}}}' is not a valid reference; use ${{NAME}}, ${{file:/path}} or ${{secret:projects/…}}"
            )
            return ""
        if ref not in os.environ:
            problems.append(f"{path}: environment variable {ref} is not set; set it or replace '${{{ref}}}'")
            return ""
        return os.environ[ref]

    return _REF.sub(one, value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- schema errors rendered with key path, value and fix --------------------------

_MSGSPEC_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_PATH_PART = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[['\"]?([^\]'\"]+)['\"]?\]")

_TYPE_WORDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp in _TYPE_WORDS:
        return _TYPE_WORDS[tp]
    if origin is list:
        inner = _describe(args[0]) if args else "values"
        inner = {"a string": "strings", "an integer": "integers", "a number": "numbers"}.get(inner, inner)
        return f"a list of {inner}"
    if origin is dict:
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for match in _PATH_PART.finditer(path):
        key, index, quoted = match.groups()
        parts.append(int(index) if index is not None else (key or quoted or ""))
    return parts


def _render_path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, part)
    return out


def _type_at(parts: list[str | int]) -> Any:
    tp: Any = Config
    for part in parts:
        while typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            candidates = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = candidates[0] if len(candidates) == 1 else candidates[-1]
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            hints = typing.get_type_hints(tp)
            if not isinstance(part, str) or part not in hints:
                return None
            tp = hints[part]
        elif typing.get_origin(tp) in (list, dict):
            args = typing.get_args(tp)
            tp = args[-1] if args else Any
        else:
            return None
    return tp


def _value_at(raw: Any, parts: list[str | int]) -> Any:
    value = raw
    for part in parts:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_PROVIDERS_ELSEWHERE = ("bedrock", "foundry", "azure", "openai")


def _schema_problem(exc: msgspec.ValidationError, raw: Any) -> str:
    match = _MSGSPEC_AT.match(str(exc))
    what = match.group("what") if match else str(exc)
    parts = _split_path(match.group("path") or "") if match else []
    unknown = re.match(r"Object contains unknown field `([^`]+)`", what)
    if unknown:
        key = unknown.group(1)
        parts.append(key)
        hint = ""
        if key.lower() in _PROVIDERS_ELSEWHERE:
            hint = f" ('{key}' is a provider this gateway does not serve; use vertex or anthropic)"
        parent = _type_at(parts[:-1])
        known = (
            sorted(typing.get_type_hints(parent))
            if isinstance(parent, type) and issubclass(parent, msgspec.Struct)
            else []
        )
        fix = f"; known keys here: {', '.join(known)}" if known else ""
        return f"{_render_path(parts)}: unknown key{hint}; remove it{fix}"
    missing = re.match(r"Object missing required field `([^`]+)`", what)
    if missing:
        parts.append(missing.group(1))
        expected = _type_at(parts)
        return f"{_render_path(parts)}: required key is missing; add it ({_describe(expected)})"
    where = _render_path(parts) or "(top level)"
    expected = _type_at(parts)
    value = _value_at(raw, parts)
    if expected is not None and (what.startswith("Expected") or what.startswith("Invalid enum value")):
        return f"{where}: expected {_describe(expected)}, got {_short(value)}"
    return f"{where}: {what[0].lower() + what[1:]} (got {_short(value)})"


# --- cross-field rules of CONFIG.md ------------------------------------------------


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _rules(cfg: Config) -> tuple[list[str], list[str]]:
    """(errors, warnings) of the rules a schema cannot express."""
    errors: list[str] = []
    warnings: list[str] = []

    url = cfg.listen.public_url
    if url is None:
        if not cfg.local.enabled:
            errors.append("listen.public_url: required key is missing; set the https origin Claude Code is given")
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(f"listen.public_url: expected an absolute http(s) URL, got {_short(url)}")
        elif parts.scheme == "http" and not is_loopback_url(url):
            errors.append(f"listen.public_url: plain http is allowed only on loopback, got {_short(url)}; use https")
        elif parts.path not in ("", "/") or parts.query:
            errors.append(f"listen.public_url: must be an origin without a path, got {_short(url)}")

    for key in ("trusted_proxies",):
        for i, cidr in enumerate(cfg.listen.trusted_proxies):
            if not _is_cidr(cidr):
                errors.append(f"listen.{key}[{i}]: expected a CIDR such as 35.191.0.0/16, got {_short(cidr)}")
    for key in ("allow_cidrs", "deny_cidrs"):
        for i, cidr in enumerate(getattr(cfg.access_control, key)):
            if not _is_cidr(cidr):
                errors.append(f"access_control.{key}[{i}]: expected a CIDR such as 10.0.0.0/8, got {_short(cidr)}")

    if "openid" not in cfg.oidc.scopes:
        errors.append(f"oidc.scopes: must include 'openid', got {_short(cfg.oidc.scopes)}")
    issuer = urlsplit(cfg.oidc.issuer)
    if issuer.scheme not in ("http", "https") or not issuer.hostname:
        errors.append(f"oidc.issuer: expected the IdP's issuer URL, got {_short(cfg.oidc.issuer)}")
    elif issuer.scheme == "http" and not is_loopback_url(cfg.oidc.issuer):
        errors.append(f"oidc.issuer: plain http is allowed only on loopback, got {_short(cfg.oidc.issuer)}")

    secrets = cfg.session.secrets
    if not secrets:
        errors.append("session.jwt_secret: expected at least one key of 32+ characters")
    for i, secret in enumerate(secrets):
        where = "session.jwt_secret" + (f"[{i}]" if isinstance(cfg.session.jwt_secret, list) else "")
        if len(secret) < 32:
            errors.append(
                f"{where}: too short ({len(secret)} characters); use at least 32 random characters "
                "(e.g. `openssl rand -base64 48`)"
            )
    if cfg.session.ttl_hours <= 0 or cfg.session.ttl_hours > 24:
        errors.append(f"session.ttl_hours: expected a number in (0, 24], got {cfg.session.ttl_hours!r}")

    if cfg.store.postgres_url is None and cfg.store.cloud_sql is None:
        errors.append("store: set store.postgres_url (any Postgres) or store.cloud_sql (Cloud SQL connector)")
    if cfg.store.max_connections < 1:
        errors.append(f"store.max_connections: expected at least 1, got {cfg.store.max_connections}")

    names: set[str] = set()
    if not cfg.upstreams:
        errors.append("upstreams: expected at least one upstream (provider vertex or anthropic)")
    for i, up in enumerate(cfg.upstreams):
        where = f"upstreams[{i}]"
        if up.name in names:
            errors.append(f"{where}.name: duplicate upstream name {_short(up.name)}; names must be unique")
        names.add(up.name)
        if up.provider.lower() in _PROVIDERS_ELSEWHERE:
            errors.append(
                f"{where}.provider: {_short(up.provider)} is not served by this gateway; use 'vertex' or 'anthropic'"
            )
        elif up.provider not in ("vertex", "anthropic"):
            errors.append(f"{where}.provider: expected 'vertex' or 'anthropic', got {_short(up.provider)}")
        if up.provider == "vertex":
            if not up.project_id:
                errors.append(f"{where}.project_id: required for provider vertex; set your GCP project id")
            if not up.region:
                errors.append(f"{where}.region: required for provider vertex (e.g. global, us-east5)")
            if "api_key" in up.auth or "credentials_file" in up.auth or "key_file" in up.auth:
                errors.append(f"{where}.auth: vertex uses the function's own identity; remove keys and key files")
            if "anonymous" in up.auth and (up.base_url is None or not is_loopback_url(up.base_url)):
                errors.append(
                    f"{where}.auth.anonymous: allowed only with a loopback base_url (a local stand-in); "
                    "remove it so the function's own identity is used"
                )
        if up.provider == "anthropic" and not up.auth.get("api_key"):
            errors.append(f"{where}.auth.api_key: required for provider anthropic; use ${{secret:…}}")
        if up.base_url is not None and urlsplit(up.base_url).scheme not in ("http", "https"):
            errors.append(f"{where}.base_url: expected an http(s) URL, got {_short(up.base_url)}")

    ids: set[str] = set()
    for i, model in enumerate(cfg.models):
        if model.id in ids:
            errors.append(f"models[{i}].id: duplicate model id {_short(model.id)}")
        ids.add(model.id)
        for key in model.upstream_model:
            if key not in names:
                errors.append(
                    f"models[{i}].upstream_model.{key}: no upstream is named {_short(key)}; "
                    f"known upstreams: {', '.join(sorted(names)) or 'none'}"
                )

    policies = cfg.managed.policies
    for i, policy in enumerate(policies):
        if policy.is_catch_all and i != len(policies) - 1:
            errors.append(
                f"managed.policies[{i}]: a catch-all policy (no match.groups) must be the last one; "
                "move it to the end or give it match.groups"
            )
        available = policy.settings.get("availableModels")
        if available is not None:
            if not isinstance(available, list) or not all(isinstance(m, str) for m in available):
                errors.append(
                    f"managed.policies[{i}].settings.availableModels: expected a list of strings, got {_short(available)}"
                )
            elif cfg.models:
                from common import models as model_catalog

                for j, entry in enumerate(available):
                    if not model_catalog.resolve_entry(cfg, entry):
                        warnings.append(
                            f"managed.policies[{i}].settings.availableModels[{j}]: {_short(entry)} matches no "
                            "configured model; Claude Code will list it but the gateway will refuse it"
                        )
        _settings_rules(cfg, i, policy, errors, warnings)
        for key in ("allow", "deny"):
            for j, pattern in enumerate(getattr(policy.tools, key)):
                if not pattern:
                    errors.append(f"managed.policies[{i}].tools.{key}[{j}]: empty tool pattern")

    if cfg.admin is not None:
        seen: set[str] = set()
        for kind in ("read_keys", "write_keys"):
            for i, admin_key in enumerate(getattr(cfg.admin, kind)):
                if admin_key.id in seen:
                    errors.append(f"admin.{kind}[{i}].id: duplicate admin key id {_short(admin_key.id)}")
                seen.add(admin_key.id)
                if len(admin_key.key) < 32:
                    errors.append(
                        f"admin.{kind}[{i}].key: too short ({len(admin_key.key)} characters); use 32+ random characters"
                    )
    else:
        for key in ("enforcement", "pricing"):
            if getattr(cfg, key) is not None:
                errors.append(f"{key}: needs an `admin` section (spend limits are set through the admin API)")

    if cfg.pricing is not None and cfg.pricing.multiplier <= 0:
        errors.append(f"pricing.multiplier: expected a positive number, got {cfg.pricing.multiplier!r}")
    if cfg.login_notice is not None and len(cfg.login_notice) > 500:
        errors.append(f"login_notice: at most 500 characters, got {len(cfg.login_notice)}")
    if cfg.telemetry.flush_timeout_ms < 0:
        errors.append("telemetry.flush_timeout_ms: expected a non-negative number of milliseconds")
    for key in ("flush_interval_ms", "forward_timeout_ms"):
        if getattr(cfg.telemetry, key) < 0:
            errors.append(f"telemetry.{key}: expected a non-negative number of milliseconds")
    if cfg.telemetry.relay_max_bytes < 1024:
        errors.append("telemetry.relay_max_bytes: expected at least 1024 bytes")
    if cfg.telemetry.collector is not None and urlsplit(cfg.telemetry.collector.endpoint).scheme not in (
        "http",
        "https",
    ):
        errors.append(
            f"telemetry.collector.endpoint: expected an http(s) URL, got {_short(cfg.telemetry.collector.endpoint)}"
        )
    for i, dest in enumerate(cfg.telemetry.forward_to):
        if urlsplit(dest.url).scheme not in ("http", "https"):
            errors.append(f"telemetry.forward_to[{i}].url: expected an http(s) URL, got {_short(dest.url)}")
    return errors, warnings


def _settings_rules(cfg: Config, i: int, policy: Policy, errors: list[str], warnings: list[str]) -> None:
    """Managed settings must be servable JSON, and what Claude Code shows must match what the gateway enforces."""
    from common import canonical  # lazy: only the config check needs them
    from common import policy as policies

    where = f"managed.policies[{i}].settings"
    try:
        canonical.plain(policy.settings, where)
    except canonical.NotJson as exc:
        errors.append(str(exc))
    available = policy.settings.get("availableModels")
    if isinstance(available, list):
        if not available:
            warnings.append(
                f"{where}.availableModels: an empty list makes Claude Code fall back to its default model, which "
                "the gateway refuses (it allows nothing); list the models this policy may use"
            )
        for j, entry in enumerate(available):
            if not isinstance(entry, str):
                continue
            if any(ch in entry for ch in "*?["):
                warnings.append(
                    f"{where}.availableModels[{j}]: {_short(entry)} is a glob; the gateway expands it but Claude Code "
                    "does not, so its model picker will not offer those models; list model ids or family aliases"
                )
    model = policy.settings.get("model")
    if isinstance(model, str) and isinstance(available, list) and not policies.model_allowed(policy, model):
        warnings.append(
            f"{where}.model: {_short(model)} is not in availableModels; Claude Code will start on a model the "
            "gateway refuses; add it to availableModels or change model"
        )


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


# --- parsing --------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    config: Config
    warnings: list[str]


def parse(
    text: str,
    source: str = "gateway.yaml",
    resolve_secret: Callable[[str], str] = _secret_access,
) -> Loaded:
    """Parse and validate YAML text; raise ConfigError naming every fault."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"(file): not valid YAML{where}: {getattr(exc, 'problem', exc)}"], source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"(top level): expected a mapping of keys, got {_short(raw)}"], source)
    problems: list[str] = []
    expanded = _expand(raw, "", problems, resolve_secret)
    if problems:
        raise ConfigError(problems, source)
    try:
        cfg = msgspec.convert(expanded, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError([_schema_problem(exc, expanded)], source) from None
    errors, warnings = _rules(cfg)
    if errors:
        raise ConfigError(errors, source)
    return Loaded(cfg, warnings)


def _is_secret_name(location: str) -> bool:
    return bool(re.fullmatch(r"(secret:)?projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?", location))


class ConfigSource:
    """The per-instance cached config of one source (a file or a secret).

    `get()` returns the cached config and, at most every `config_refresh_seconds`
    (5 s for files), checks whether the source changed: a file's mtime and size,
    or a secret's newest version name. A new text that fails validation is
    refused with a logged error and the last good config stays in force.
    """

    def __init__(self, location: str, resolve_secret: Callable[[str], str] = _secret_access) -> None:
        self.location = location.removeprefix("secret:")
        self.is_secret = _is_secret_name(location)
        self._resolve_secret = resolve_secret
        self._lock = threading.Lock()
        self._loaded: Loaded | None = None
        self._stamp: object = None
        self._checked_at = 0.0

    def _read(self) -> tuple[str, object]:
        if self.is_secret:
            from common import secrets

            name = self.location if "/versions/" in self.location else self.location + "/versions/latest"
            version, text = secrets.access_version(name)
            return text, version
        try:
            stat = os.stat(self.location)
            with open(self.location, encoding="utf-8") as handle:
                return handle.read(), (stat.st_mtime_ns, stat.st_size)
        except OSError as exc:
            raise ConfigError(
                [f"(file): cannot read {self.location} ({exc.strerror}); set GATEWAY_CONFIG to gateway.yaml's path"],
                self.location,
            ) from None

    def _stamp_now(self) -> object:
        if self.is_secret:
            return self._read()[1]
        try:
            stat = os.stat(self.location)
        except OSError:
            return self._stamp  # a vanished file keeps the last good config
        return (stat.st_mtime_ns, stat.st_size)

    def get(self) -> Config:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                if self._loaded is None:
                    text, stamp = self._read()
                    self._loaded = parse(text, self.location, self._resolve_secret)
                    for warning in self._loaded.warnings:
                        logs.warning("config warning", detail=warning)
                    self._stamp = stamp
                    self._checked_at = time.monotonic()
                return self._loaded.config
        interval = loaded.config.config_refresh_seconds if self.is_secret else 5
        if time.monotonic() - self._checked_at >= interval and self._lock.acquire(blocking=False):
            try:
                self._checked_at = time.monotonic()
                self._reload_if_changed()
            finally:
                self._lock.release()
        return self._loaded.config  # type: ignore[union-attr]

    def _reload_if_changed(self) -> None:
        try:
            stamp = self._stamp_now()
            if stamp == self._stamp:
                return
            text, stamp = self._read()
            loaded = parse(text, self.location, self._resolve_secret)
        except ConfigError as exc:
            logs.error("new gateway.yaml refused; the last good config stays in force", problems=exc.problems)
            return
        except Exception as exc:  # the source is unreachable: keep serving
            logs.error("cannot re-read gateway.yaml; the last good config stays in force", error=str(exc))
            return
        self._loaded = loaded
        self._stamp = stamp
        for warning in loaded.warnings:
            logs.warning("config warning", detail=warning)
        logs.info("gateway.yaml reloaded", source=self.location)
        for listener in list(_listeners):
            listener(loaded.config)


_source: ConfigSource | None = None
_source_lock = threading.Lock()
_listeners: list[Callable[[Config], None]] = []


def config_location() -> str:
    return os.environ.get("GATEWAY_CONFIG", "gateway.yaml")


def current() -> Config:
    """The config of this instance (from $GATEWAY_CONFIG), cached and refreshed."""
    global _source
    source = _source
    if source is None:
        with _source_lock:
            if _source is None:
                _source = ConfigSource(config_location())
            source = _source
    return source.get()


def use(location: str | None) -> None:
    """Point this process at another config source (tests, the local runner)."""
    global _source
    with _source_lock:
        _source = ConfigSource(location) if location else None


def on_reload(listener: Callable[[Config], None]) -> None:
    """Call `listener(new_config)` whenever a changed config is taken into force."""
    _listeners.append(listener)


def iter_problems(exc: ConfigError) -> Iterator[str]:
    yield from exc.problems
