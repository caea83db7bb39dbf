"""The gateway.yaml schema: a tree of frozen msgspec Structs (CONFIG.md; "ours" marks our keys).

msgspec imports in a few ms (cold start counts). `ConfigError` is the one
exception for an unusable file: one line per fault, each naming the key path,
the bad value and the fix.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from common.core.urls import is_loopback_url

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
    # (ours) how long a rotated refresh token still returns its successor (concurrent refresh, retries)
    refresh_grace_seconds: float = 60.0

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


class CircuitBreaker(_Base, frozen=True):
    """(ours) per instance: this many consecutive failures stop traffic to an upstream for the cool-down."""

    failures: int = 3
    cooldown_seconds: float = 30.0


class Upstream(_Base, frozen=True):
    name: str
    provider: str
    base_url: str | None = None
    project_id: str | None = None
    region: str | None = None
    auth: dict[str, str] = {}
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    anthropic_version: str = "vertex-2023-10-16"
    circuit_breaker: CircuitBreaker = CircuitBreaker()  # (ours)


class Model(_Base, frozen=True):
    id: str
    display_name: str | None = None
    upstream_model: dict[str, str] = {}
    # (ours) the upstreams tried in this order (failover); None = every upstream serving the model, in config order
    upstreams: list[str] | None = None


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
    # (ours) the web console at /admin: members of viewer_groups may look, admin_groups may change things
    viewer_groups: list[str] = []
    console_session_minutes: int = 60  # (ours) idle timeout of a console sign-in
    console_session_max_hours: float = 12.0  # (ours) a console sign-in ends this long after it began


class Enforcement(_Base, frozen=True):
    fail_closed_on_error: bool = False
    reservation_ttl_seconds: int = 900  # reservations of crashed requests expire
    # (ours) budget leases (docs/spend.md): a caller far from every cap is admitted against an
    # instance-local lease of up to lease_requests expected costs, with no round trip.
    lease_requests: int = 8  # a lease holds at most this many expected costs; 0: no leases
    lease_headroom_percent: int = 5  # and at most this percent of each cap's room left
    lease_below_percent: int = 50  # leases only while used + the lease stays at or below this percent of every cap
    lease_seconds: float = 30.0  # how long an instance admits new requests against one lease


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


class AlertDestination(_Base, frozen=True):
    """(ours) where budget alerts go: a signed generic JSON webhook, or a Slack incoming webhook."""

    name: str
    url: str
    type: Literal["webhook", "slack"] = "webhook"
    secret: str | None = None  # HMAC-SHA256 key of a `webhook` (use ${secret:…} or ${ENV})
    timeout_seconds: float = 5.0


class Alerts(_Base, frozen=True):
    """(ours) budget alerts: each (cap, period, threshold) fires once, to every destination."""

    thresholds: list[int] = msgspec.field(default_factory=lambda: [75, 90, 100])
    scopes: dict[str, list[int]] = {}  # per cap scope (user, rbac_group, organization): overrides `thresholds`
    destinations: list[AlertDestination] = []
    near_percent: int = 5  # a settle within this many points of a threshold triggers an exact check
    max_attempts: int = 8
    backoff_seconds: float = 2.0  # first retry delay; doubled per attempt, at most 10 minutes
    queue_size: int = 1000  # pending evaluations per instance (bounded; overflow is logged)

    def thresholds_for(self, scope: str) -> list[int]:
        return sorted(set(self.scopes.get(scope, self.thresholds)))


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


class Retention(_Base, frozen=True):
    """(ours) how long rows are kept (null: forever), and how a sweep runs; see docs/operations.md."""

    audit_days: int | None = 365
    spend_usage_months: int | None = 13  # per-request usage rows
    spend_rollup_months: int | None = 25  # daily rollups and per-day counters: what reports read
    sessions_days_after_expiry: int | None = 90  # sign-ins (identity, groups) after expiry or revocation
    device_codes_hours_after_expiry: int = 24
    rate_limits_hours_after_window: int = 24
    batch_rows: int = 5000  # rows per DELETE statement: locks and WAL stay small
    max_seconds: float = 300.0  # one sweep's budget; the next run continues


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
    alerts: Alerts | None = None
    telemetry: Telemetry = Telemetry()
    retention: Retention = Retention()
    login_notice: str | None = None
    config_refresh_seconds: int = 300
    local: Local = Local()

    @property
    def public_url(self) -> str:
        return (self.listen.public_url or "http://127.0.0.1:8080").rstrip("/")

    @property
    def is_local(self) -> bool:
        return self.local.enabled and is_loopback_url(self.public_url)
