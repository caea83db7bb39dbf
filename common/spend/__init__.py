"""Spend caps: list prices, caps per user / group / org and period, reserve before proxying, settle after.

`pricing` turns usage into integer micro-dollars at list price; `ledger`
reserves an estimate against every cap that applies (429 at a cap) and
settles the real cost (group-committed, queued while the database is away);
`usage_report` is `/api/oauth/usage` as Claude Code reads it.
"""

__all__ = [
    "ledger",
    "pricing",
    "usage_report",
]
