"""The load generator: an asyncio HTTP client in a process of its own.

`python -m bench.loadgen` reads a JSON spec on stdin and writes a JSON result
on stdout. It runs `requests` POSTs with `concurrency` workers over pooled
keep-alive connections (like a fleet of Claude Code clients would, each holding
its connection) and records, per request: total latency, time to first body
byte, the arrival time of every SSE event (hence the gaps between events),
status and events received. Bearer tokens rotate over the spec's list so the
requests come from many users.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.sse import SseTimer, gaps


@dataclass
class Spec:
    url: str
    requests: int
    concurrency: int
    body: dict[str, Any]
    tokens: list[str] = field(default_factory=list)
    auth: str = "bearer"  # bearer | x-api-key
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        return cls(**data)


@dataclass
class Sample:
    status: int
    total_ms: float
    ttfb_ms: float | None
    started: float
    first_byte: float | None
    finished: float
    events: int
    complete: bool
    event_times: list[float]
    error: str | None = None


def _headers(spec: Spec, index: int) -> dict[str, str]:
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01", **spec.headers}
    if spec.tokens:
        token = spec.tokens[index % len(spec.tokens)]
        if spec.auth == "x-api-key":
            headers["x-api-key"] = token
        else:
            headers["authorization"] = f"Bearer {token}"
    return headers


async def _one(session: aiohttp.ClientSession, spec: Spec, body: bytes, index: int, origin: float) -> Sample:
    stream = bool(spec.body.get("stream"))
    started = time.perf_counter()
    first: float | None = None
    timer = SseTimer()
    status = 0
    try:
        async with session.post(spec.url, data=body, headers=_headers(spec, index)) as response:
            status = response.status
            async for chunk in response.content.iter_any():
                now = time.perf_counter()
                if first is None:
                    first = now
                if stream and status == 200:
                    timer.feed(chunk, now)
        error = None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    finished = time.perf_counter()
    names = [e.name for e in timer.events]  # `ping` keep-alives are not the upstream's events
    return Sample(
        status=status,
        total_ms=(finished - started) * 1000,
        ttfb_ms=(first - started) * 1000 if first is not None else None,
        started=started - origin,
        first_byte=(first - origin) if first is not None else None,
        finished=finished - origin,
        events=sum(1 for name in names if name != "ping"),
        complete=(not stream) or ("message_stop" in names),
        event_times=[(e.at - origin) for e in timer.events],
        error=error,
    )


async def run(spec: Spec) -> dict[str, Any]:
    body = json.dumps(spec.body, separators=(",", ":")).encode()
    connector = aiohttp.TCPConnector(limit=spec.concurrency, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    samples: list[Sample] = []
    counter = itertools.count()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        origin = time.perf_counter()

        async def worker() -> None:
            while (index := next(counter)) < spec.requests:
                samples.append(await _one(session, spec, body, index, origin))

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
        wall = time.perf_counter() - origin
    return summarize(samples, wall)


def summarize(samples: list[Sample], wall_s: float) -> dict[str, Any]:
    """The raw figures the orchestrator turns into statistics (milliseconds)."""
    statuses: dict[str, int] = {}
    for s in samples:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    ok = [s for s in samples if s.status == 200 and s.error is None]
    return {
        "wall_s": wall_s,
        "count": len(samples),
        "ok": len(ok),
        "statuses": statuses,
        "errors": sorted({s.error for s in samples if s.error})[:5],
        "total_ms": [s.total_ms for s in ok],
        "ttfb_ms": [s.ttfb_ms for s in ok if s.ttfb_ms is not None],
        "events": [s.events for s in ok],
        "complete": sum(1 for s in ok if s.complete),
        "gaps_ms": [g * 1000 for s in ok for g in gaps(s.event_times)],
        "held": [(s.first_byte, s.finished) for s in ok if s.first_byte is not None],
    }


def main() -> int:
    spec = Spec.from_json(json.load(sys.stdin))
    result = asyncio.run(run(spec))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
