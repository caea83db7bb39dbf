"""The audit log: one structured log line and one `audit_log` row per sign-in event and admin write, and the queries that read them back."""

__all__ = [
    "records",
]
