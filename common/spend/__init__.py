"""Spend caps: list prices, caps per user / group / org and period, reserve before proxying, settle after.

This package owns the spend tables (`spend_limits`, `spend_holds`,
`spend_counters`, `spend_usage`, migrations 003-004) and every statement on
them (`store`, the only module with their SQL). `pricing` turns usage into
integer micro-dollars at list price; `caps` knows which caps apply to a
caller (from a 5-second per-process copy of the limits), how full they are,
and the headers and 429 the client sees; `reserve` holds an estimate against
them in one statement before the upstream call; `settle` prices the real
usage into a typed `SettleRow` and commits it in one statement, shared
between concurrent settles by `batcher`, and kept by `queue` while the
database is away; `observed` keeps recent per-model figures for an expected
cost; `leases` lets a caller far from every cap be admitted by this instance
against a lease taken in the reserve statement, with no round trip;
`usage_report` is `/api/oauth/usage` as Claude Code reads it.
The per-process objects (`caps.LIMITS`, `batcher.GROUP_COMMIT`,
`queue.PENDING`, `observed.OBSERVED`, `leases.LEASES`) are made at import and live as long as
the process; `shutdown` saves what is unsettled when the instance is told to
stop (flushes the queue, spills the rest as `spend.unsettled` log lines).
"""

__all__ = [
    "batcher",
    "caps",
    "leases",
    "observed",
    "pricing",
    "queue",
    "reserve",
    "settle",
    "shutdown",
    "store",
    "usage_report",
]
