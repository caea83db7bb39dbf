"""The audit log: one structured log line and one `audit_log` row per sign-in event and admin write, and the queries that read them back.

`records` is the whole surface and all SQL of the `audit_log` table:
`record()` writes an event (a failed row is logged, never raised), `events()`
reads a page of them newest first as `Event` rows (for the admin API and the
console), `count()` how many match the same filters, `actions()` the actions
recorded; the admin API's `audit_log` handler and the console's audit page
only shape them.
"""

__all__ = [
    "records",
]
