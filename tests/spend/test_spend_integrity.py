"""A ledger nothing can poison or lose: poisoned rows below the edge, parking, spilling, replay, clamping."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

from support.logcapture import capture_logs
from support.spend import request_info, setup_gateway

from common import config
from common.core.usage import MAX_TOKENS, Usage
from common.db import pool
from common.spend import batcher, queue, settle, shutdown
from common.spend import store as spend_store
from gateway import spend_replay

POISON = "claude-haiku-4-5\u0000"


def _rows(n: int, poisoned: int | None = None) -> list[spend_store.SettleRow]:
    cfg = config.current()
    rows = []
    for i in range(n):
        info = request_info(email=f"u{i % 7}@example.com", groups=("eng",))
        row = settle.row(cfg, info, None, Usage(input_tokens=100 + i, output_tokens=10 + i), 200)
        if i == poisoned:
            row = dataclasses.replace(row, model=POISON)
        rows.append(row)
    return rows


def _ledger() -> tuple[int, int]:
    count, total = pool.get().execute("SELECT count(*), coalesce(sum(cost_micros), 0)::bigint FROM spend_usage")[0]
    return int(count), int(total)


def test_a_poisoned_row_among_60_concurrent_settles_sinks_nothing(tmp_path: Path, database_url: str) -> None:
    """Before: the NUL row failed the whole group-commit batch (60 served, 29 rows). Now every row is written."""
    setup_gateway(tmp_path, database_url)
    rows = _rows(61, poisoned=30)  # the poisoned one injected below the edge
    group_commit = batcher.GroupCommit()
    barrier = threading.Barrier(len(rows))
    failures: list[BaseException] = []

    def one(row: spend_store.SettleRow) -> None:
        barrier.wait()
        try:
            group_commit.settle(pool.get(), row)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(r,)) for r in rows]
    with capture_logs() as logs:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    assert _ledger() == (61, sum(r.cost_micros for r in rows))  # the poisoned request's spend counts too
    models = dict(pool.get().execute("SELECT request_key::text, model FROM spend_usage"))
    assert models[rows[30].reservation_key] == "claude-haiku-4-5\ufffd"
    assert any("control characters replaced" in line["message"] for line in logs.lines())
    counters = dict(pool.get().execute("SELECT scope_key, sum(spent_micros)::bigint FROM spend_counters GROUP BY 1"))
    assert counters["org"] == sum(r.cost_micros for r in rows)


def test_a_row_refused_even_when_cleaned_is_parked_and_the_rest_written(tmp_path: Path, database_url: str) -> None:
    setup_gateway(tmp_path, database_url)
    rows = _rows(5)
    bad = dataclasses.replace(rows[2], status=2**40)  # out of range for integer: refused, not cleanable
    rows[2] = bad
    for r in rows:
        queue.PENDING.add(r, RuntimeError("database away"))
    with capture_logs() as logs:
        written = queue.PENDING.flush(pool.get())
    assert written == 5 and queue.pending() == 0  # the bad row at the middle blocked nothing
    assert _ledger() == (4, sum(r.cost_micros for r in rows if r is not bad))
    parked = [line for line in logs.lines() if line["message"] == batcher.UNSETTLED]
    assert [(p["reason"], p["row"]["reservation"]) for p in parked] == [("refused", bad.reservation_key)]
    assert parked[0]["row"] == bad.as_item()


def test_a_poisoned_queue_head_does_not_block_what_follows(tmp_path: Path, database_url: str) -> None:
    """Before: store.settle of the NUL row failed at the queue's head forever; holds expired, spend never counted."""
    setup_gateway(tmp_path, database_url)
    rows = _rows(6, poisoned=0)
    for r in rows:
        queue.PENDING.add(r, RuntimeError("database away"))
    assert queue.PENDING.flush(pool.get()) == 6
    assert _ledger() == (6, sum(r.cost_micros for r in rows))


def test_spilled_rows_replay_once_from_log_lines_and_a_cloud_logging_export(tmp_path: Path, database_url: str) -> None:
    cfg_path = setup_gateway(tmp_path, database_url)
    rows = _rows(4)
    settle.batcher.write_one(pool.get(), rows[0])  # already in the ledger: a replay must not count it again
    for r in rows:
        queue.PENDING.add(r, RuntimeError("database away"))
    with capture_logs() as logs:
        assert queue.PENDING.spill("shutdown") == 4
    assert queue.pending() == 0
    lines = logs.buffer.getvalue()
    log_file = tmp_path / "worker.log"
    log_file.write_text("[gunicorn] booting worker\n" + lines + lines)  # a noise line; every row twice
    replayed = spend_replay.replay_file(log_file)
    assert (replayed.found, replayed.distinct, replayed.already, replayed.applied, replayed.refused) == (8, 4, 1, 3, 0)
    expected = (4, sum(r.cost_micros for r in rows))
    assert _ledger() == expected
    counters = dict(pool.get().execute("SELECT scope_key, sum(spent_micros)::bigint FROM spend_counters GROUP BY 1"))
    assert counters["org"] == expected[1]
    # The same rows as Cloud Logging exports them (`gcloud logging read --format=json`): applied zero times more.
    export = [{"insertId": str(i), "jsonPayload": json.loads(line)} for i, line in enumerate(lines.splitlines())]
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(export))
    again = spend_replay.replay_file(export_file)
    assert (again.found, again.already, again.applied) == (4, 4, 0)
    assert _ledger() == expected
    # And through the command, with a row that is not one.
    export.append({"jsonPayload": {"message": "spend.unsettled", "row": {"reservation": "x"}}})
    export_file.write_text(json.dumps(export))
    assert spend_replay.main(str(export_file), str(cfg_path)) == 1  # the malformed one is reported


def test_at_shutdown_the_queue_is_flushed_and_what_cannot_be_written_is_spilled(
    tmp_path: Path, database_url: str
) -> None:
    setup_gateway(tmp_path, database_url)
    rows = _rows(3)
    for r in rows:
        queue.PENDING.add(r, RuntimeError("database away"))
    try:
        shutdown.terminate()
        assert queue.pending() == 0 and _ledger() == (3, sum(r.cost_micros for r in rows))
        # Once the spill began, a settle the database refuses goes straight to the log.
        late = _rows(1)[0]
        with capture_logs() as logs:
            queue.PENDING.add(late, RuntimeError("database away"))
        assert queue.pending() == 0
        assert [line["row"]["reservation"] for line in logs.lines() if line["message"] == batcher.UNSETTLED] == [
            late.reservation_key
        ]
    finally:
        shutdown.reset()


def test_negative_and_absurd_upstream_usage_is_clamped_and_noted() -> None:
    """Before: negative usage was stored as negative token counts (a credit)."""
    usage = Usage()
    usage.merge(
        {
            "input_tokens": -500,
            "output_tokens": 10**15,
            "cache_read_input_tokens": True,  # not a count
            "cache_creation": {"ephemeral_5m_input_tokens": -1, "ephemeral_1h_input_tokens": 7},
        }
    )
    assert usage == Usage(output_tokens=MAX_TOKENS, cache_creation_1h_input_tokens=7)
    assert usage.clamped == ["input_tokens=-500", f"output_tokens={10**15}", "ephemeral_5m_input_tokens=-1"]


def test_a_clamped_settle_is_logged_and_stores_no_negative_figure(tmp_path: Path, database_url: str) -> None:
    setup_gateway(tmp_path, database_url)
    usage = Usage()
    usage.merge({"input_tokens": -500, "output_tokens": 40})
    with capture_logs() as logs:
        settle.settle(config.current(), request_info(), None, usage, 200)
    row = pool.get().execute("SELECT input_tokens, output_tokens, cost_micros FROM spend_usage")[0]
    assert row[0] == 0 and row[1] == 40 and row[2] > 0
    assert any(line.get("reported") == ["input_tokens=-500"] for line in logs.lines())
