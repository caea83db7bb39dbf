"""Rate limits are shared by every instance (Postgres)."""

from __future__ import annotations

import threading

import pytest

from common import config
from common.auth import ratelimit
from common.config import RateLimit
from common.core.errors import OAuthError
from common.db import migrations
from common.db import pool as store


def test_rate_limit_counts_across_instances(database_url: str) -> None:
    dbs = [store.Database(config.Store(postgres_url=database_url)) for _ in range(3)]
    migrations.migrate(dbs[0])
    limit = RateLimit(max=20, window_seconds=600)
    refused: list[int] = []

    def hammer(db: store.Database) -> None:
        for _ in range(10):
            try:
                ratelimit.check("device_verify:198.51.100.1", limit, "code guesses", db)
            except OAuthError as exc:
                assert exc.error == "slow_down" and exc.status == 429
                assert int(exc.headers["Retry-After"]) > 0
                refused.append(1)

    threads = [threading.Thread(target=hammer, args=(db,)) for db in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refused) == 10  # 30 hits, 20 allowed, wherever they landed
    ratelimit.check("device_verify:198.51.100.2", limit, "code guesses", dbs[0])  # another address is unaffected
    for db in dbs:
        db.close()


def test_counted_hits_prune_expired_windows_in_bounded_batches(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = store.Database(config.Store(postgres_url=database_url))
    migrations.migrate(db)
    monkeypatch.setattr(ratelimit, "PRUNE_ONE_IN", 1)  # every hit prunes: no dice in a test
    monkeypatch.setattr(ratelimit, "PRUNE_BATCH", 3)
    limit = RateLimit(max=10, window_seconds=600)
    day = ratelimit.KEEP_SECONDS
    db.execute(
        "INSERT INTO rate_limits (bucket, window_start, hits)"
        " SELECT 'token:192.0.2.' || n, now() - make_interval(secs => %s), 1 FROM generate_series(1, 5) n",
        (day + 3600,),
    )
    db.execute(  # ended less than KEEP_SECONDS ago, and an expired window of another kind
        "INSERT INTO rate_limits (bucket, window_start, hits) VALUES"
        " ('token:192.0.2.50', now() - make_interval(secs => %s), 1),"
        " ('device_verify:192.0.2.1', now() - make_interval(secs => %s), 1)",
        (day - 3600, day + 3600),
    )

    def buckets() -> list[str]:
        return [r[0] for r in db.execute("SELECT bucket FROM rate_limits ORDER BY bucket")]

    ratelimit.check("token:198.51.100.7", limit, "token requests", db)
    assert len([b for b in buckets() if b.startswith("token:192.0.2.") and b != "token:192.0.2.50"]) == 2
    ratelimit.check("token:198.51.100.7", limit, "token requests", db)
    assert buckets() == ["device_verify:192.0.2.1", "token:192.0.2.50", "token:198.51.100.7"]
    assert db.execute("SELECT hits FROM rate_limits WHERE bucket = 'token:198.51.100.7'") == [(2,)]
    db.close()
