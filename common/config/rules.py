"""The cross-field rules of CONFIG.md that a schema cannot express, section by section."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from common.config.problems import PROVIDERS_ELSEWHERE, short
from common.config.schema import Config, Policy
from common.core import checksum, models
from common.core.urls import is_loopback_url


def check(cfg: Config) -> tuple[list[str], list[str]]:
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
            errors.append(f"listen.public_url: expected an absolute http(s) URL, got {short(url)}")
        elif parts.scheme == "http" and not is_loopback_url(url):
            errors.append(f"listen.public_url: plain http is allowed only on loopback, got {short(url)}; use https")
        elif parts.path not in ("", "/") or parts.query:
            errors.append(f"listen.public_url: must be an origin without a path, got {short(url)}")

    for key in ("trusted_proxies",):
        for i, cidr in enumerate(cfg.listen.trusted_proxies):
            if not _is_cidr(cidr):
                errors.append(f"listen.{key}[{i}]: expected a CIDR such as 35.191.0.0/16, got {short(cidr)}")
    for key in ("allow_cidrs", "deny_cidrs"):
        for i, cidr in enumerate(getattr(cfg.access_control, key)):
            if not _is_cidr(cidr):
                errors.append(f"access_control.{key}[{i}]: expected a CIDR such as 10.0.0.0/8, got {short(cidr)}")

    if "openid" not in cfg.oidc.scopes:
        errors.append(f"oidc.scopes: must include 'openid', got {short(cfg.oidc.scopes)}")
    issuer = urlsplit(cfg.oidc.issuer)
    if issuer.scheme not in ("http", "https") or not issuer.hostname:
        errors.append(f"oidc.issuer: expected the IdP's issuer URL, got {short(cfg.oidc.issuer)}")
    elif issuer.scheme == "http" and not is_loopback_url(cfg.oidc.issuer):
        errors.append(f"oidc.issuer: plain http is allowed only on loopback, got {short(cfg.oidc.issuer)}")

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
    if not 0 <= cfg.session.refresh_grace_seconds <= 600:
        errors.append(
            f"session.refresh_grace_seconds: expected seconds in [0, 600], got {cfg.session.refresh_grace_seconds!r}"
            " (0 turns the grace off: any reuse of a rotated refresh token revokes the session)"
        )

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
            errors.append(f"{where}.name: duplicate upstream name {short(up.name)}; names must be unique")
        names.add(up.name)
        if up.provider.lower() in PROVIDERS_ELSEWHERE:
            errors.append(
                f"{where}.provider: {short(up.provider)} is not served by this gateway; use 'vertex' or 'anthropic'"
            )
        elif up.provider not in ("vertex", "anthropic"):
            errors.append(f"{where}.provider: expected 'vertex' or 'anthropic', got {short(up.provider)}")
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
            errors.append(f"{where}.base_url: expected an http(s) URL, got {short(up.base_url)}")
        breaker = up.circuit_breaker
        if not 1 <= breaker.failures <= 1000:
            errors.append(f"{where}.circuit_breaker.failures: expected 1 to 1000 failures, got {breaker.failures}")
        if not 0 < breaker.cooldown_seconds <= 3600:
            errors.append(
                f"{where}.circuit_breaker.cooldown_seconds: expected a number in (0, 3600], got "
                f"{breaker.cooldown_seconds!r}"
            )

    ids: set[str] = set()
    for i, model in enumerate(cfg.models):
        if model.id in ids:
            errors.append(f"models[{i}].id: duplicate model id {short(model.id)}")
        ids.add(model.id)
        for key in model.upstream_model:
            if key not in names:
                errors.append(
                    f"models[{i}].upstream_model.{key}: no upstream is named {short(key)}; "
                    f"known upstreams: {', '.join(sorted(names)) or 'none'}"
                )
        if model.upstreams is not None:
            _model_upstreams(i, model.upstreams, model.upstream_model, names, errors, warnings)

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
                    f"managed.policies[{i}].settings.availableModels: expected a list of strings, got {short(available)}"
                )
            elif cfg.models:
                for j, entry in enumerate(available):
                    if not any(models.entry_matches(entry, m.id) for m in cfg.models):
                        warnings.append(
                            f"managed.policies[{i}].settings.availableModels[{j}]: {short(entry)} matches no "
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
                    errors.append(f"admin.{kind}[{i}].id: duplicate admin key id {short(admin_key.id)}")
                seen.add(admin_key.id)
                if len(admin_key.key) < 32:
                    errors.append(
                        f"admin.{kind}[{i}].key: too short ({len(admin_key.key)} characters); use 32+ random characters"
                    )
        for kind in ("admin_groups", "viewer_groups"):
            for i, group in enumerate(getattr(cfg.admin, kind)):
                if not group.strip():
                    errors.append(f"admin.{kind}[{i}]: empty group name")
        if not 1 <= cfg.admin.console_session_minutes <= 24 * 60:
            errors.append(
                f"admin.console_session_minutes: expected 1 to 1440 minutes, got {cfg.admin.console_session_minutes}"
            )
        if not 0 < cfg.admin.console_session_max_hours <= 24 * 7:
            errors.append(
                f"admin.console_session_max_hours: expected a number in (0, 168], got {cfg.admin.console_session_max_hours!r}"
            )
    else:
        for key in ("enforcement", "pricing", "alerts"):
            if getattr(cfg, key) is not None:
                errors.append(f"{key}: needs an `admin` section (spend limits are set through the admin API)")

    if cfg.enforcement is not None:
        _lease_rules(cfg, errors)
    if cfg.alerts is not None:
        _alert_rules(cfg, errors)
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
            f"telemetry.collector.endpoint: expected an http(s) URL, got {short(cfg.telemetry.collector.endpoint)}"
        )
    for i, dest in enumerate(cfg.telemetry.forward_to):
        if urlsplit(dest.url).scheme not in ("http", "https"):
            errors.append(f"telemetry.forward_to[{i}].url: expected an http(s) URL, got {short(dest.url)}")
    _retention_rules(cfg, errors)
    return errors, warnings


def _model_upstreams(
    i: int, order: list[str], upstream_model: dict[str, str], names: set[str], errors: list[str], warnings: list[str]
) -> None:
    """`models[].upstreams`: the failover order names known upstreams, each once."""
    where = f"models[{i}].upstreams"
    known = ", ".join(sorted(names)) or "none"
    if not order:
        errors.append(f"{where}: expected at least one upstream name, or remove the key to use every serving upstream")
    seen: set[str] = set()
    for j, name in enumerate(order):
        if name not in names:
            errors.append(f"{where}[{j}]: no upstream is named {short(name)}; known upstreams: {known}")
        elif name in seen:
            errors.append(f"{where}[{j}]: {short(name)} is listed twice; list each upstream once")
        seen.add(name)
    for key in upstream_model:
        if key in names and key not in seen:
            warnings.append(
                f"models[{i}].upstream_model.{key}: {short(key)} is not in {where}, so this id is never sent; "
                "add the upstream to the list or remove the entry"
            )


def _retention_rules(cfg: Config, errors: list[str]) -> None:
    """`retention`: positive ages; rollups (what the reports read) outlive the rows they sum; caps keep their month."""
    r = cfg.retention
    for key in ("audit_days", "spend_usage_months", "spend_rollup_months", "sessions_days_after_expiry"):
        value = getattr(r, key)
        if value is not None and value < 1:
            errors.append(f"retention.{key}: expected a positive whole number or null (keep forever), got {value}")
    for key in ("device_codes_hours_after_expiry", "rate_limits_hours_after_window"):
        if getattr(r, key) < 0:
            errors.append(f"retention.{key}: expected 0 or more hours, got {getattr(r, key)}")
    usage, rollup = r.spend_usage_months, r.spend_rollup_months
    if rollup is not None and rollup < 2:
        errors.append(
            f"retention.spend_rollup_months: expected at least 2 (a monthly cap reads its counters), got {rollup}"
        )
    if rollup is not None and (usage is None or usage > rollup):
        errors.append(
            f"retention.spend_rollup_months: must be at least spend_usage_months ({usage}), got {rollup}: "
            "the cost report reads the rollups, so they must outlive the usage rows (or set both to null)"
        )
    if not 1 <= r.batch_rows <= 100_000:
        errors.append(f"retention.batch_rows: expected 1 to 100000 rows per statement, got {r.batch_rows}")
    if not 0 < r.max_seconds <= 3600:
        errors.append(f"retention.max_seconds: expected a number in (0, 3600], got {r.max_seconds!r}")


def _lease_rules(cfg: Config, errors: list[str]) -> None:
    """`enforcement.lease_*`: bounded, so the overshoot and early-refusal bounds of docs/spend.md hold."""
    enforcement = cfg.enforcement
    assert enforcement is not None
    if not 0 <= enforcement.lease_requests <= 1000:
        errors.append(f"enforcement.lease_requests: expected 0 (no leases) to 1000, got {enforcement.lease_requests}")
    for key in ("lease_headroom_percent", "lease_below_percent"):
        value = getattr(enforcement, key)
        if not 1 <= value <= 100:
            errors.append(f"enforcement.{key}: expected a percent between 1 and 100, got {value}")
    if not 0 < enforcement.lease_seconds <= 3600:
        errors.append(f"enforcement.lease_seconds: expected a number in (0, 3600], got {enforcement.lease_seconds!r}")


def _alert_rules(cfg: Config, errors: list[str]) -> None:
    """`alerts`: thresholds are whole percents, scopes are cap scopes, destinations are reachable and signed."""
    alerts = cfg.alerts
    assert alerts is not None
    lists = [("alerts.thresholds", alerts.thresholds)]
    for scope, values in alerts.scopes.items():
        if scope not in ("user", "rbac_group", "organization"):
            errors.append(f"alerts.scopes.{scope}: expected a cap scope (user, rbac_group, organization)")
        lists.append((f"alerts.scopes.{scope}", values))
    for where, values in lists:
        if not values:
            errors.append(f"{where}: expected at least one threshold, e.g. [75, 90, 100]")
        for j, value in enumerate(values):
            if not 1 <= value <= 1000:
                errors.append(f"{where}[{j}]: expected a percent of the cap between 1 and 1000, got {value}")
    if not 0 <= alerts.near_percent <= 100:
        errors.append(f"alerts.near_percent: expected 0 to 100 percentage points, got {alerts.near_percent}")
    if not 1 <= alerts.max_attempts <= 50:
        errors.append(f"alerts.max_attempts: expected 1 to 50, got {alerts.max_attempts}")
    if not 0 < alerts.backoff_seconds <= 600:
        errors.append(f"alerts.backoff_seconds: expected a number in (0, 600], got {alerts.backoff_seconds!r}")
    if not 1 <= alerts.queue_size <= 100_000:
        errors.append(f"alerts.queue_size: expected 1 to 100000, got {alerts.queue_size}")
    names: set[str] = set()
    for i, dest in enumerate(alerts.destinations):
        where = f"alerts.destinations[{i}]"
        if dest.name in names or not dest.name.strip():
            errors.append(f"{where}.name: expected a unique, non-empty name, got {short(dest.name)}")
        names.add(dest.name)
        parts = urlsplit(dest.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(f"{where}.url: expected an absolute http(s) URL, got {short(dest.url)}")
        elif parts.scheme == "http" and not is_loopback_url(dest.url):
            errors.append(f"{where}.url: plain http is allowed only on loopback; use https")
        if dest.type == "webhook" and (dest.secret is None or len(dest.secret) < 16):
            errors.append(
                f"{where}.secret: a webhook needs an HMAC secret of 16+ characters; use ${{secret:…}} or ${{ENV}}"
            )
        if not 0 < dest.timeout_seconds <= 30:
            errors.append(f"{where}.timeout_seconds: expected a number in (0, 30], got {dest.timeout_seconds!r}")


def _settings_rules(cfg: Config, i: int, policy: Policy, errors: list[str], warnings: list[str]) -> None:
    """Managed settings must be servable JSON, and what Claude Code shows must match what the gateway enforces."""
    where = f"managed.policies[{i}].settings"
    try:
        checksum.plain(policy.settings, where)
    except checksum.NotJson as exc:
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
                    f"{where}.availableModels[{j}]: {short(entry)} is a glob; the gateway expands it but Claude Code "
                    "does not, so its model picker will not offer those models; list model ids or family aliases"
                )
    model = policy.settings.get("model")
    if (
        isinstance(model, str)
        and isinstance(available, list)
        and not models.allowed_by_settings(policy.settings, model)
    ):
        warnings.append(
            f"{where}.model: {short(model)} is not in availableModels; Claude Code will start on a model the "
            "gateway refuses; add it to availableModels or change model"
        )


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True
