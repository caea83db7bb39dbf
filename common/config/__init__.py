"""gateway.yaml: the schema, `${…}` references and Secret Manager, validation, source and reload.

`current()` is this instance's config (from $GATEWAY_CONFIG, re-read when its
source changes; a bad new version is refused and the last good one stays);
`load()` reads one location once; `parse()` validates text. Every fault is a
`ConfigError` whose lines name the key path, the value and the fix.
Everything derived from a config version is built once per version through
`derive(cfg, builder)` (see `runtime`), never kept in ad-hoc caches.
"""

from common.config.runtime import Runtime, derive, runtime_of
from common.config.schema import (
    Admin,
    AdminKey,
    AlertDestination,
    Alerts,
    CloudSql,
    Collector,
    Config,
    ConfigError,
    ForwardTo,
    GoogleGroups,
    Managed,
    Model,
    Policy,
    Pricing,
    PricingOverride,
    RateLimit,
    Retention,
    Store,
    Telemetry,
    Tools,
    Upstream,
)
from common.config.source import (
    ConfigSource,
    Loaded,
    active_location,
    config_location,
    current,
    is_secret_name,
    load,
    parse,
    use,
)
from common.core.urls import is_loopback_url

__all__ = [
    "Admin",
    "AdminKey",
    "AlertDestination",
    "Alerts",
    "CloudSql",
    "Collector",
    "Config",
    "ConfigError",
    "ConfigSource",
    "ForwardTo",
    "GoogleGroups",
    "Loaded",
    "Managed",
    "Model",
    "Policy",
    "Pricing",
    "PricingOverride",
    "RateLimit",
    "Retention",
    "Runtime",
    "Store",
    "Telemetry",
    "Tools",
    "Upstream",
    "active_location",
    "config_location",
    "current",
    "derive",
    "is_loopback_url",
    "is_secret_name",
    "load",
    "parse",
    "runtime_of",
    "secret_manager",
    "use",
]
