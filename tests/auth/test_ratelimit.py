"""Rate limits are shared by every instance (Postgres)."""

from __future__ import annotations

import threading

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
