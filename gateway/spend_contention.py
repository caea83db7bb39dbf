"""Measure the org-wide cap's contention: `python -m gateway.spend_contention [--threads 8 --seconds 5]`.

Every request of the organisation settles into the org's counter and is
checked against the org cap. This drives `metering.begin`/`finish` (one
reserve and one settle round trip each) from many users at once on an
embedded PostgreSQL, in three layouts: the org counter sharded (the default),
one org row (SHARDS=1), and one row with the org key locked like a user's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


def _run(threads: int, seconds: float) -> tuple[float, float, float, float, float]:
    from common import config
    from common.core.identity import Identity
    from common.core.usage import RequestInfo, Usage
    from common.db import pool as store
    from common.proxy import metering
    from common.spend import caps

    cfg = config.current()
    begin_ms: list[float] = []
    finish_ms: list[float] = []
    done = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(n: int) -> None:
        identity = Identity(sub=f"u{n}", email=f"u{n}@example.com", groups=("eng",))
        mine_b: list[float] = []
        mine_f: list[float] = []
        while time.monotonic() < stop:
            info = RequestInfo(identity, "claude-haiku-4-5", "vertex", "claude-haiku-4-5@20251001", max_tokens=100)
            t0 = time.perf_counter()
            ticket = metering.begin(cfg, info)
            t1 = time.perf_counter()
            metering.finish(cfg, ticket, Usage(input_tokens=100, output_tokens=50), 200)
            t2 = time.perf_counter()
            mine_b.append((t1 - t0) * 1000)
            mine_f.append((t2 - t1) * 1000)
        with lock:
            begin_ms.extend(mine_b)
            finish_ms.extend(mine_f)
            done[0] += len(mine_b)

    waiting: list[int] = []

    def sample() -> None:
        # Backends waiting on a lock (row or advisory), sampled: the contention itself.
        db = store.get()
        while time.monotonic() < stop:
            rows = db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            waiting.append(int(rows[0][0]))
            time.sleep(0.01)

    caps.invalidate()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    pool.append(threading.Thread(target=sample))
    for t in pool:
        t.start()
    for t in pool:
        t.join()

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 2 else 0.0

    lock_waits = statistics.mean(waiting) if waiting else 0.0
    return done[0] / seconds, statistics.median(finish_ms), p(finish_ms, 99), p(begin_ms, 99), lock_waits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.spend_contention")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2, help="run the layouts this many times, interleaved")
    parser.add_argument(
        "--durable", action="store_true", help="fsync and synchronous_commit on (the embedded server runs without)"
    )
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    import yaml

    from common import config
    from common.db import pool as store
    from common.spend import caps, reserve, settle
    from common.spend import store as spend_store
    from gateway import devdb

    server = devdb.start()
    try:
        url = server.create_database("contention")
        workdir = Path(tempfile.mkdtemp(prefix="spend-contention-"))
        cfg = {
            "local": {"enabled": True},
            "listen": {"public_url": "http://127.0.0.1:8080"},
            "oidc": {"issuer": "http://127.0.0.1:9", "client_id": "x"},
            "session": {"jwt_secret": "x" * 40},
            "store": {"postgres_url": url, "max_connections": args.threads + 3},
            "upstreams": [{"name": "vertex", "provider": "vertex", "project_id": "p", "region": "global"}],
            "admin": {"write_keys": [{"id": "w", "key": "k" * 40}]},
        }
        (workdir / "gateway.yaml").write_text(yaml.safe_dump(cfg))
        config.use(str(workdir / "gateway.yaml"))
        store.reset()
        if args.durable:
            store.get().execute("ALTER SYSTEM SET fsync = on")
            store.get().execute("ALTER SYSTEM SET synchronous_commit = on")
            store.get().execute("SELECT pg_reload_conf()")
            store.reset()
        spend_store.upsert_limit(store.get(), "splim_org", "organization", "", "monthly", 10**12, False)
        print(f"{args.threads} threads x {args.seconds:.0f} s, each request = 1 reserve + 1 settle round trip")
        print(
            f"{'layout':<34} {'req/s':>8} {'settle p50':>11} {'settle p99':>11} {'reserve p99':>12}"
            f" {'lock waiters':>13}"
        )
        org_unlocked: frozenset[str] = frozenset({caps.ORG_KEY})
        layouts: tuple[tuple[str, int, frozenset[str]], ...] = (
            ("org counter in 16 shards (default)", 16, org_unlocked),
            ("org counter in 1 row", 1, org_unlocked),
            ("1 row, org key locked at reserve", 1, frozenset()),
        )
        _run(args.threads, 1.0)  # warm up: open the pool's connections
        for _ in range(args.rounds):
            for name, shards, unlocked in layouts:
                settle.SHARDS = shards
                reserve.UNLOCKED_KEYS = unlocked
                spend_store.delete_usage(store.get())
                rate, p50, p99, rp99, waiters = _run(args.threads, args.seconds)
                print(f"{name:<34} {rate:8.0f} {p50:9.2f}ms {p99:9.2f}ms {rp99:10.2f}ms {waiters:13.2f}", flush=True)
        store.reset()
    finally:
        devdb.remove(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
