"""Group commit of settles: concurrent settles share one statement, and the ledger stays exact."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from support.spend import request_info, setup_gateway

from common import config
from common.core.usage import Usage
from common.db import pool as store
from common.spend import batcher, settle
from common.spend import store as spend_store


class CountingDatabase:
    """The real pool, counting the statements each kind of settle sends."""

    def __init__(self, db: store.Database) -> None:
        self.db = db
        self.single = 0
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def execute(self, sql: str, args: Any = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            if "spend_settle_batch" in sql:
                import json

                self.batches.append(len(json.loads(args[0])))
            elif "spend_settle(" in sql:
                self.single += 1
        return self.db.execute(sql, args)


def test_concurrent_settles_share_statements_and_count_exactly(tmp_path: Path, database_url: str) -> None:
    setup_gateway(tmp_path, database_url)
    cfg = config.current()
    counting = CountingDatabase(store.get())
    users = [f"u{i}@example.com" for i in range(8)]
    barrier = threading.Barrier(48)
    costs: list[int] = []
    group_commit = batcher.GroupCommit()  # this test's own, as each process has one

    def one(n: int) -> None:
        info = request_info(email=users[n % len(users)], groups=("eng",))
        usage = Usage(input_tokens=100 + n, output_tokens=10 + n, cache_read_input_tokens=n)
        row = settle.row(cfg, info, None, usage, 200)
        barrier.wait()
        group_commit.settle(counting, row)  # type: ignore[arg-type]
        costs.append(row.cost_micros)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert counting.single + sum(counting.batches) == 48  # every settle went out exactly once
    assert counting.batches, "48 simultaneous settles should have shared at least one statement"
    db = store.get()
    assert db.execute("SELECT count(*), sum(cost_micros)::bigint FROM spend_usage")[0] == (48, sum(costs))
    counters = dict(db.execute("SELECT scope_key, sum(spent_micros)::bigint FROM spend_counters GROUP BY scope_key"))
    assert counters["org"] == sum(costs)
    assert counters["group:eng"] == sum(costs)
    assert sum(v for k, v in counters.items() if k.startswith("user:")) == sum(costs)


def test_a_replayed_request_in_a_batch_counts_once(tmp_path: Path, database_url: str) -> None:
    setup_gateway(tmp_path, database_url)
    cfg = config.current()
    info = request_info(email="a@example.com")
    row = settle.row(cfg, info, None, Usage(input_tokens=1000, output_tokens=100), 200)
    other = settle.row(cfg, request_info(email="b@example.com"), None, Usage(input_tokens=5), 200)
    db = store.get()
    spend_store.settle_batch(db, [row, row, other])
    spend_store.settle(db, row)  # and once more alone
    rows = dict(db.execute("SELECT user_email, cost_micros FROM spend_usage"))
    assert rows == {"a@example.com": row.cost_micros, "b@example.com": other.cost_micros}
    spent = db.execute("SELECT sum(spent_micros)::bigint FROM spend_counters WHERE scope_key = 'user:a@example.com'")
    assert spent[0][0] == row.cost_micros
