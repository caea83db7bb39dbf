"""The admin API (functions/admin maps paths here): spend limits, cost analytics, policy explain, sessions, the audit log, and the OpenAPI document.

`auth` decides who is an admin (admin keys or admin groups); `api` holds what
every admin handler shares (pagination, validation, audit of writes).
"""

__all__ = [
    "analytics",
    "api",
    "audit_log",
    "auth",
    "explain",
    "openapi",
    "sessions",
    "spend_limits",
]
