"""CPU of the upstream HTTP client alone: `python -m bench.http1_client [--module FILE]`.

Starts the upstream stand-in in a process of its own (so its CPU is not
counted) and, in one thread of this process, measures `time.process_time()`
per small POST round trip over a kept-alive connection, and per event of a
long stream. `--module` points at another version of `http1.py` (for
example one checked out from git history) to compare the two.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from types import ModuleType
from typing import Any

_BODY = json.dumps(
    {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
).encode()
_HEADERS = {
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    "user-agent": "claude-cli/2.0.0 (external, cli)",
    "x-api-key": "sk-bench",
}


def _load(path: str | None) -> ModuleType:
    if path is None:
        from common.proxy import http1

        return http1
    spec = importlib.util.spec_from_file_location("http1_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _per_call_us(samples: list[float]) -> str:
    samples.sort()
    mean = statistics.fmean(samples) * 1e6
    median = samples[len(samples) // 2] * 1e6
    p90 = samples[int(len(samples) * 0.9)] * 1e6
    return f"mean {mean:.1f} µs, median {median:.1f} µs, p90 {p90:.1f} µs"


def _post_samples(http1: ModuleType, client: Any, url: str, count: int) -> list[float]:
    samples: list[float] = []
    clock = time.process_time
    for _ in range(count):
        started = clock()
        response = client.post(url, _HEADERS, _BODY, 5, 5)
        response.read()
        samples.append(clock() - started)
    assert response.status == 200, response.status
    return samples


def _stream_per_chunk(client: Any, url: str, events: int, gap_ms: float) -> tuple[int, float]:
    body = json.loads(_BODY)
    body["stream"] = True
    body["_standin"] = {"deltas": events, "gap_ms": gap_ms}
    raw = json.dumps(body).encode()
    runs: list[float] = []
    chunks = 0
    for _ in range(5):
        response = client.post(url, _HEADERS, raw, 5, 5)
        chunks = 0
        started = time.process_time()
        for _chunk in response.iter_chunks(idle_seconds=10, silence_seconds=60):
            chunks += 1
        runs.append((time.process_time() - started) / max(chunks, 1))
    return chunks, statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--module",
        action="append",
        help="path of an http1.py to measure (repeatable; default common.proxy.http1); "
        "several are measured in alternating rounds so they share the machine's noise",
    )
    parser.add_argument("--requests", type=int, default=5000, help="POSTs per version")
    parser.add_argument("--events", type=int, default=2000, help="content_block_delta events of the stream")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="stand-in delay between two stream events")
    args = parser.parse_args(argv)
    paths: list[str | None] = list(args.module or [None])
    modules = [_load(path) for path in paths]
    port = _free_port()
    standin = subprocess.Popen(
        [sys.executable, "-m", "gateway.standins.upstream", "--port", str(port), "--record", "false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/_standin/stats", timeout=1).close()  # noqa: S310 (loopback)
                break
            except OSError:
                time.sleep(0.1)
        url = f"{base}/v1/messages"
        clients = [module.Client(maxsize=4) for module in modules]
        for module, client in zip(modules, clients, strict=True):
            _post_samples(module, client, url, 200)  # warm-up: connection, code paths
        samples: list[list[float]] = [[] for _ in modules]
        rounds = 10
        for _ in range(rounds):
            for i, (module, client) in enumerate(zip(modules, clients, strict=True)):
                samples[i] += _post_samples(module, client, url, args.requests // rounds)
        for path, client, found in zip(paths, clients, samples, strict=True):
            chunks, per_chunk = _stream_per_chunk(client, url, args.events, args.gap_ms)
            print(path or "common.proxy.http1")
            print(f"  small POST round trip ({len(found)}, one thread, keep-alive): {_per_call_us(found)} CPU")
            print(f"  stream ({args.events} deltas, gap {args.gap_ms} ms, {chunks} chunks): ", end="")
            print(f"CPU per chunk median {per_chunk * 1e6:.1f} µs (5 streams)")
    finally:
        standin.terminate()
        standin.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
