"""Fixed-window rate limits stored in Postgres, so they hold across instances; all SQL of `rate_limits`.

One statement per check (an upsert that returns the new count): one round
trip, atomic under concurrency. The table prunes itself: about one counted
hit in `PRUNE_ONE_IN` also deletes, in that same statement, up to
`PRUNE_BATCH` windows of its kind (the bucket's prefix, e.g. `token:`) that
ended more than `KEEP_SECONDS` ago. Rows locked by a concurrent prune are
skipped, never waited for, so pruning adds no contention and bounded work.
"""

from __future__ import annotations

import secrets
import time

from common.config import RateLimit
from common.core.errors import OAuthError
from common.db import pool

PRUNE_ONE_IN = 100
PRUNE_BATCH = 500
KEEP_SECONDS = 86_400  # windows are kept a day past their end (forensics), then pruned

_COUNT = (
    "INSERT INTO rate_limits (bucket, window_start, hits) VALUES (%s, to_timestamp(%s), 1)"
    " ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1"
    " RETURNING hits"
)
# The windows deleted start before this window does, so they are never the row counted.
_PRUNE = (
    "WITH pruned AS (DELETE FROM rate_limits WHERE ctid = ANY(ARRAY("
    "   SELECT ctid FROM rate_limits WHERE starts_with(bucket, %s)"
    "   AND window_start < now() - make_interval(secs => %s) LIMIT %s FOR UPDATE SKIP LOCKED)))"
)
_PRUNE_AND_COUNT = f"{_PRUNE} {_COUNT}"


def hit(bucket: str, limit: RateLimit, db: pool.Database | None = None) -> tuple[int, int]:
    """Count one hit in `bucket`'s current window; return (hits so far, seconds until the window ends)."""
    now = int(time.time())
    window = max(1, limit.window_seconds)
    start = now - now % window
    sql: str = _COUNT
    args: tuple[object, ...] = (bucket, start)
    if secrets.randbelow(PRUNE_ONE_IN) == 0:
        # Buckets of one kind share one window length: what ended KEEP_SECONDS ago started a window earlier.
        kind = bucket.partition(":")[0] + ":"
        sql, args = _PRUNE_AND_COUNT, (kind, window + KEEP_SECONDS, PRUNE_BATCH, bucket, start)
    rows = (db or pool.get()).execute(sql, args)
    return int(rows[0][0]), start + window - now


def current(bucket: str, limit: RateLimit, db: pool.Database | None = None) -> tuple[int, int]:
    """(hits so far, seconds until the window ends) of `bucket`'s current window, counting nothing."""
    now = int(time.time())
    window = max(1, limit.window_seconds)
    start = now - now % window
    rows = (db or pool.get()).execute(
        "SELECT hits FROM rate_limits WHERE bucket = %s AND window_start = to_timestamp(%s)", (bucket, start)
    )
    return (int(rows[0][0]) if rows else 0), start + window - now


def refusal(what: str, retry_after: int) -> OAuthError:
    """The 429 `slow_down` a bucket past its limit answers."""
    return OAuthError(
        "slow_down",
        f"Too many {what} from your address; try again in {retry_after} seconds.",
        status=429,
        headers={"Retry-After": str(retry_after)},
    )


def check(bucket: str, limit: RateLimit, what: str, db: pool.Database | None = None) -> None:
    """Raise a 429 `slow_down` OAuth error once `bucket` exceeds `limit` in its window."""
    hits, retry_after = hit(bucket, limit, db)
    if hits > limit.max:
        raise refusal(what, retry_after)


def sweep(before: float, batch: int, db: pool.Database | None = None) -> int:
    """Delete up to `batch` windows of any kind that started before `before` (a UNIX time; retention
    passes one older than the longest window, so only ended windows go); how many went."""
    rows = (db or pool.get()).execute(
        "WITH gone AS (DELETE FROM rate_limits WHERE ctid = ANY(ARRAY("
        " SELECT ctid FROM rate_limits WHERE window_start < to_timestamp(%s) LIMIT %s FOR UPDATE SKIP LOCKED))"
        " RETURNING 1) SELECT count(*) FROM gone",
        (before, batch),
    )
    return int(rows[0][0]) if rows else 0
