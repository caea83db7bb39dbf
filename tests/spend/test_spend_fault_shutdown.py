"""Fault suite: Postgres stopped mid-load, SIGTERM then SIGKILL of the gateway during the outage, then replay.

The `messages` function runs as production runs it (functions-framework's
gunicorn, a worker process of its own: `bench.target.start`) in front of the
upstream stand-in, on an embedded PostgreSQL of this test's own (it is stopped
and restarted). Before: 10 requests served during the outage, SIGTERM → 0
ledger rows and no line saying so; streams open at SIGTERM+SIGKILL left no row
for the input the upstream consumed. Now: the worker spills every settle it
could not write as a `spend.unsettled` line, `python -m gateway spend replay`
applies them, and the ledger equals what the upstream served to the micro-dollar.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
import yaml
from support import token_for

from bench import procs, target
from common import config
from common.core.identity import Identity
from common.core.usage import RequestInfo, Usage
from common.spend import reserve
from gateway import devdb
from gateway.standins import upstream as standin_module

PROMPT = "the-prompt-text-that-must-never-be-logged"
SECRET_MARK = "sk-bench-standin"


def _body(i: int, stream: bool, **standin: Any) -> dict[str, Any]:
    return {
        "model": target.MODEL,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": PROMPT}],
        "_standin": {"input_tokens": 1000 + i, "output_tokens": 50 + i, "cache_read_input_tokens": 7 * i, **standin},
    }


def _expected_cost(i: int) -> int:
    info = RequestInfo(
        identity=Identity(sub="x", email="x@example.com", groups=()),
        model=target.MODEL,
        upstream="anthropic",
        upstream_model=target.MODEL,
    )
    usage = Usage(input_tokens=1000 + i, output_tokens=50 + i, cache_read_input_tokens=7 * i)
    return reserve.request_cost(config.current(), info, usage)


def _db(url: str, sql: str) -> list[tuple[Any, ...]]:
    import pg8000.dbapi

    parts = url.rsplit("/", 1)
    port = int(parts[0].rsplit(":", 1)[1])
    conn = pg8000.dbapi.connect(user="postgres", host="127.0.0.1", port=port, database=parts[1])
    try:
        cursor = conn.cursor()
        cursor.execute(sql)
        return [tuple(r) for r in cursor.fetchall()]
    finally:
        conn.close()


def _replay(log: Path, cfg_path: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "gateway", "spend", "replay", str(log), "--config", str(cfg_path)]
    return subprocess.run(argv, env=procs.base_env(), cwd=procs.ROOT, capture_output=True, text=True, timeout=120)


def test_outage_sigterm_sigkill_then_replay_leaves_the_ledger_exact(tmp_path: Path) -> None:
    pg = devdb.start()  # this test's own server: it is stopped and restarted
    upstream = standin_module.start(deltas=4, text="relayed text ")
    child: procs.Child | None = None
    try:
        url = pg.create_database("gateway")
        port = procs.free_port()
        data = target.config(port=port, database_url=url, upstream_url=upstream.origin, collector_url="")
        data.pop("telemetry")
        data["store"]["connect_timeout_seconds"] = 2
        cfg_path = tmp_path / "gw" / "gateway.yaml"
        cfg_path.parent.mkdir()
        cfg_path.write_text(yaml.safe_dump(data, sort_keys=False))
        token = token_for(cfg_path, email="dev@example.com", groups=("bench",))
        child = target.start(cfg_path, port, threads=8, log_dir=tmp_path / "logs")
        procs.wait_http(child, f"http://127.0.0.1:{port}/healthz", timeout=60)
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}

        def post(i: int, stream: bool, **standin: Any) -> requests.Response:
            body = json.dumps(_body(i, stream, **standin))
            reply = requests.post(
                f"http://127.0.0.1:{port}/v1/messages", data=body, headers=headers, timeout=60, stream=stream
            )
            if not stream:
                return reply
            reply.content  # noqa: B018 (read to the end)
            return reply

        served = [i for i in range(4) if post(i, i % 2 == 1).status_code == 200]  # the database is up
        assert served == [0, 1, 2, 3]
        pg.stop()  # the outage begins
        during = list(range(4, 14))
        statuses = [post(i, i % 2 == 0).status_code for i in during]
        assert statuses == [200] * 10  # served: no caps, fail-open; their settles queue in the worker
        open_replies: list[Any] = []

        def slow(i: int) -> None:  # a stream still running at SIGTERM (and SIGKILL)
            try:
                reply = post(i, True, deltas=40, gap_ms=400)
                open_replies.append(reply.status_code)
            except requests.RequestException as exc:
                open_replies.append(type(exc).__name__)

        slow_threads = [threading.Thread(target=slow, args=(i,), daemon=True) for i in (100, 101)]
        for t in slow_threads:
            t.start()
        time.sleep(1.5)
        assert upstream.stats()["completed"] == 14  # the two slow ones are still streaming

        os.killpg(child.pid, signal.SIGTERM)  # what Cloud Run does, then SIGKILL 10 s later
        time.sleep(10)
        os.killpg(child.pid, signal.SIGKILL)
        child.process.wait(timeout=10)
        log = child.log_path.read_text(errors="replace")
        unsettled = [json.loads(line) for line in log.splitlines() if '"spend.unsettled"' in line]
        assert len({u["row"]["reservation"] for u in unsettled}) == 12  # 10 queued + 2 open streams
        assert "SPEND USAGE LOST" not in log
        assert PROMPT not in log and SECRET_MARK not in log  # the rows hold figures, never prompt or key

        pg.start()  # the database is back; the worker is gone
        replay = _replay(child.log_path, cfg_path)
        assert replay.returncode == 0, replay.stderr
        assert "12 applied" in replay.stdout
        again = _replay(child.log_path, cfg_path)
        assert "0 applied, 12 already in the ledger" in again.stdout  # idempotent

        complete = _db(
            url,
            "SELECT count(*), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),"
            " sum(cost_micros) FROM spend_usage WHERE status = 200",
        )[0]
        stats = upstream.stats()
        assert complete[:4] == (14, stats["input_tokens"], stats["output_tokens"], stats["cache_read_input_tokens"])
        assert complete[4] == sum(_expected_cost(i) for i in range(14))  # to the micro-dollar
        counters = _db(url, "SELECT sum(spent_micros) FROM spend_counters WHERE scope_key = 'org'")[0][0]
        partial = _db(
            url,
            "SELECT status, input_tokens, output_tokens, cost_micros FROM spend_usage"
            " WHERE status <> 200 ORDER BY input_tokens",
        )
        # The open streams: the input the upstream consumed, output estimated from what was relayed.
        assert [(s, i) for s, i, _, _ in partial] == [(503, 1100), (503, 1101)]
        assert all(1 < out < 150 for _, _, out, _ in partial)
        assert counters == complete[4] + sum(c for *_, c in partial)
    finally:
        if child is not None and child.alive():
            child.stop()
        upstream.stop()
        devdb.remove(pg)
