"""The real-traffic scenario: the request Claude Code really sends, as the headline.

The body and headers are the real CLI's own (`bench.capture`, captured at bench
time, never committed): tens of KB of system prompt and 12 tools, `max_tokens`
in the tens of thousands, the CLI's default model, `stream: true`, thinking.
The stand-in answers it as Claude Code's traffic looks after the first turn of
a session: a few fresh input tokens, the prompt read from the cache, a few
hundred tokens written to the cache, a few hundred output tokens, paced like a
real reply (tens of deltas a few ms apart).

It runs streamed at c=1, c=32 and 64 concurrent streams against every target
of the run; scenario 4 (spend) sends the same request. Costs are the stand-in's
usage priced by the gateway's own pricing module (`common.spend.pricing`), so
"the ledger is exact" means: the ledger's cost equals the upstream's usage
priced at list, to the micro-dollar.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench import scenarios, standin, stats
from gateway import capture

VERSION = "2.1.333"  # the pinned CLI whose request is captured (the peer's version too)
DELTAS = 40
GAP_MS = 5.0
FRESH_INPUT_TOKENS = 6
CACHE_WRITE_TOKENS = 320  # 5-minute cache writes (the CLI marks its blocks `ephemeral`, no ttl)
OUTPUT_TOKENS = 380
BYTES_PER_TOKEN = 4  # the prompt's token count, estimated from its JSON size
# requests per measurement at each concurrency (c=1 is paced: ~0.25 s a request), run in
# ROUNDS that alternate the targets, so a busy moment of a shared machine falls on all of them
REQUESTS = {1: 30, 32: 256, 64: 192}
ROUNDS = {1: 3, 32: 2, 64: 1}
WARMUP = 16
# Claude Code keeps several requests in flight per developer (the main turn, subagents, the
# start-up Haiku call): at concurrency c the real scenario is c / IN_FLIGHT developers, each
# with IN_FLIGHT requests at a time, not c strangers who each send one request.
IN_FLIGHT_PER_DEVELOPER = 4
SPEND_HEADROOM = 9  # scenario 4: the cap leaves about this many requests of headroom
# Headers of the capture not replayed: the load generator's own transport and auth;
# `accept-encoding` off so no target compresses the stream the load generator times.
_NOT_REPLAYED = frozenset({"accept-encoding", "authorization", "x-api-key", "host", "content-length", "connection"})


def prompt_tokens(captured: capture.CapturedRequest) -> int:
    return int(capture.shape(captured)["bytes"]) // BYTES_PER_TOKEN


def usage(prompt: int) -> dict[str, int]:
    """Stand-in usage typical of Claude Code after the first turn: the prompt mostly cache reads."""
    return {
        "input_tokens": FRESH_INPUT_TOKENS,
        "cache_read_input_tokens": max(0, prompt - FRESH_INPUT_TOKENS - CACHE_WRITE_TOKENS),
        "cache_creation_5m_input_tokens": CACHE_WRITE_TOKENS,
        "output_tokens": OUTPUT_TOKENS,
    }


def knobs(prompt: int) -> dict[str, Any]:
    return standin.knobs(deltas=DELTAS, gap_ms=GAP_MS, **usage(prompt))


def payload(captured: capture.CapturedRequest, prompt: int | None = None) -> dict[str, Any]:
    """The captured body, streamed, with the stand-in's knobs."""
    body = dict(captured.body)
    body["stream"] = True
    return body | knobs(prompt_tokens(captured) if prompt is None else prompt)


def headers(captured: capture.CapturedRequest) -> dict[str, str]:
    return {k: v for k, v in captured.headers.items() if k.lower() not in _NOT_REPLAYED}


def query(captured: capture.CapturedRequest) -> str:
    return captured.path.partition("?")[2]


# --- prices -------------------------------------------------------------------------------


def price_book(config_path: Path) -> Any:
    """The price book of the bench's gateway.yaml (list prices, its overrides)."""
    from common import config
    from common.spend import pricing

    return pricing.build(config.load(str(config_path)).config.pricing)


def cost_micros(book: Any, model: str, tokens: dict[str, int]) -> int:
    """What one request with this usage costs at list, by the gateway's own pricing."""
    from common.core.usage import Usage

    return int(book.cost_micros(model, Usage(**tokens)))


def cap_cents(per_request_micros: int, headroom: int = SPEND_HEADROOM) -> int:
    """A whole-cent cap that leaves `headroom` requests (and a fraction of one) of budget."""
    return max(1, math.ceil(headroom * per_request_micros / 10_000))


# --- scenario figures ---------------------------------------------------------------------


def merge_raw(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several load-generator results of one target as one (samples pooled, counts and
    times summed; each run's held intervals shifted past the previous runs' wall time)."""
    out: dict[str, Any] = {
        "wall_s": 0.0,
        "count": 0,
        "ok": 0,
        "complete": 0,
        "statuses": {},
        "errors": [],
        "total_ms": [],
        "ttfb_ms": [],
        "events": [],
        "gaps_ms": [],
        "held": [],
    }
    cpu: float | None = 0.0
    for raw in runs:
        shift = out["wall_s"]
        for key in ("count", "ok", "complete"):
            out[key] += raw[key]
        for key in ("total_ms", "ttfb_ms", "events", "gaps_ms"):
            out[key] += raw[key]
        for status, n in raw["statuses"].items():
            out["statuses"][status] = out["statuses"].get(status, 0) + n
        out["errors"] = sorted(set(out["errors"]) | set(raw["errors"]))[:5]
        out["held"] += [(start + shift, end + shift) for start, end in raw["held"]]
        out["wall_s"] += raw["wall_s"]
        cpu = cpu + raw["cpu_s"] if cpu is not None and "cpu_s" in raw else None
    if cpu is not None and runs:
        out["cpu_s"] = cpu
    return out


def figures(raw: dict[str, Any], expected_events: int | None) -> dict[str, Any]:
    """A streamed run's figures: the stream's (TTFB, gaps, delivery) plus total latency and throughput."""
    out = scenarios.stream_figures(raw, expected_events)
    out["latency_ms"] = out["total_ms"]
    out["rps"] = stats.ratio(raw["ok"], raw["wall_s"])
    return out


def added(by_target: dict[str, Any]) -> dict[str, Any]:
    """What each non-direct target adds to direct's percentiles."""
    direct = by_target.get("direct")
    out: dict[str, Any] = {}
    if direct is None:
        return out
    for name, f in by_target.items():
        if name in ("direct", "added"):
            continue
        out[name] = {
            "latency_p50": f["latency_ms"]["p50"] - direct["latency_ms"]["p50"],
            "latency_p99": f["latency_ms"]["p99"] - direct["latency_ms"]["p99"],
            "ttfb_p50": f["ttfb_ms"]["p50"] - direct["ttfb_ms"]["p50"],
            "ttfb_p99": f["ttfb_ms"]["p99"] - direct["ttfb_ms"]["p99"],
            "gap_p99": f["gap_ms"]["p99"] - direct["gap_ms"]["p99"],
        }
    return out


def spend_figures(spend: dict[str, Any], per_request_micros: int, cap: int) -> dict[str, Any]:
    """Scenario 4 with the real shape: spend against the cap, and the ledger's cost
    against the stand-in's usage priced at list (`per_request_micros` a request served).

    `spend` is `bench.spend.scenario`'s result; it gains, per target: final spend
    (ours: the ledger's cost; the peer's: what the stand-in served it, at list),
    its ratio to the cap, the overshoot in micro-dollars and, for ours, whether the
    ledger's cost is exactly the served usage priced at list.
    """
    cap_micros = cap * 10_000
    headroom = cap_micros / per_request_micros
    out = dict(spend)
    out.update(
        shape="real",
        per_request_micros=per_request_micros,
        cents_per_request=per_request_micros / 10_000,
        cap_cents=cap,
        cap_micros=cap_micros,
        headroom_requests_exact=headroom,
        headroom_requests=math.floor(headroom),
    )
    for name in ("gateway", "peer"):
        f = spend.get(name)
        if not isinstance(f, dict):
            continue
        f = dict(f)
        served = (f.get("standin_usage_with_probe") or f.get("standin_usage") or {}).get("completed")
        served_micros = served * per_request_micros if isinstance(served, int) else None
        f["served_requests"] = served
        f["served_micros"] = served_micros
        f["overshoot_requests"] = f["allowed"] - math.floor(headroom)
        ledger = f.get("ledger") if name == "gateway" else None
        final: int | None
        if isinstance(ledger, dict) and "cost_micros" in ledger:
            final = int(ledger["cost_micros"])
            f["ledger_cost_exact"] = served_micros is not None and final == served_micros
        else:
            final = served_micros
        f["final_spend_micros"] = final
        f["spend_vs_cap"] = stats.ratio(final, cap_micros) if final is not None else None
        f["overshoot_micros"] = final - cap_micros if final is not None else None
        f["overshoot_cents"] = f["overshoot_micros"] / 10_000 if final is not None else None
        out[name] = f
    return out


def developers(tokens: list[str], concurrency: int) -> list[str]:
    """The bearer tokens of the developers behind `concurrency` requests in flight (IN_FLIGHT_PER_DEVELOPER each).

    The load generator rotates its tokens per request, so each developer keeps about that many in flight."""
    return tokens[: max(1, concurrency // IN_FLIGHT_PER_DEVELOPER)] if tokens else tokens
