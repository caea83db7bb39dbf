"""The admin API (functions/admin maps paths here): spend limits, cost analytics, policy explain, sessions, the audit log, the OpenAPI document, the retention sweep (`retention`), and the fleet tables' SQL (`fleet`, read by the console).

`auth` decides who is an admin (admin keys or admin groups); `api` holds what
every admin handler shares (pagination, validation, audit of writes).
"""

__all__ = [
    "analytics",
    "api",
    "audit_log",
    "auth",
    "explain",
    "fleet",
    "openapi",
    "retention",
    "sessions",
    "spend_limits",
]
