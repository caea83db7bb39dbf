"""Fixed-window rate limits stored in Postgres, so they hold across instances.

One statement per check (an upsert that returns the new count): one round
trip, atomic under concurrency.
"""

from __future__ import annotations

import time

from common.config import RateLimit
from common.core.errors import OAuthError
from common.db import pool as store


def hit(bucket: str, limit: RateLimit, db: store.Database | None = None) -> tuple[int, int]:
    """Count one hit in `bucket`'s current window; return (hits so far, seconds until the window ends)."""
    now = int(time.time())
    window = max(1, limit.window_seconds)
    start = now - now % window
    rows = (db or store.get()).execute(
        "INSERT INTO rate_limits (bucket, window_start, hits) VALUES (%s, to_timestamp(%s), 1)"
        " ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1"
        " RETURNING hits",
        (bucket, start),
    )
    return int(rows[0][0]), start + window - now


def check(bucket: str, limit: RateLimit, what: str, db: store.Database | None = None) -> None:
    """Raise a 429 `slow_down` OAuth error once `bucket` exceeds `limit` in its window."""
    hits, retry_after = hit(bucket, limit, db)
    if hits > limit.max:
        raise OAuthError(
            "slow_down",
            f"Too many {what} from your address; try again in {retry_after} seconds.",
            status=429,
            headers={"Retry-After": str(retry_after)},
        )


def prune(db: store.Database | None = None, older_than_seconds: int = 86_400) -> None:
    """Drop windows that ended long ago (called opportunistically)."""
    (db or store.get()).execute(
        "DELETE FROM rate_limits WHERE window_start < now() - make_interval(secs => %s)", (older_than_seconds,)
    )
