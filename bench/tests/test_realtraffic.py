"""The real-traffic scenario's arithmetic: usage, list price, cap, spend figures, and the peer ratios."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench import realtraffic, report, standin, target
from bench.tests.test_report import sample_results
from gateway import capture


def _captured(extra_bytes: int = 0) -> capture.CapturedRequest:
    body = _body(extra_bytes)
    return capture.CapturedRequest(
        version="2.1.333",
        path="/v1/messages?beta=true",
        headers=_HEADERS,
        body=body,
        size=len(json.dumps(body, separators=(",", ":")).encode()),
    )


_HEADERS = {
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,effort-2025-11-24",
    "accept-encoding": "gzip, br",
    "user-agent": "claude-cli/2.1.333 (external, sdk-cli)",
    "x-app": "cli",
}


def _body(extra_bytes: int) -> dict[str, object]:
    return {
        "model": "claude-opus-4-7",
        "max_tokens": 64000,
        "stream": True,
        "thinking": {"type": "adaptive"},
        "tools": [{"name": f"T{i}", "input_schema": {}} for i in range(12)],
        "system": [{"type": "text", "text": "x" * extra_bytes}],
        "messages": [{"role": "user", "content": "q"}],
    }


def test_usage_is_mostly_cache_reads_and_sums_to_the_prompt() -> None:
    u = realtraffic.usage(22_000)
    assert sum(v for k, v in u.items() if k != "output_tokens") == 22_000
    assert u["cache_read_input_tokens"] > 0.9 * 22_000
    assert u["input_tokens"] < 10 and 100 <= u["cache_creation_5m_input_tokens"] < 1000
    assert 100 <= u["output_tokens"] < 1000
    assert realtraffic.usage(10)["cache_read_input_tokens"] == 0  # never negative


def test_payload_headers_and_query_replay_the_capture() -> None:
    captured = _captured(4000)
    body = realtraffic.payload(captured)
    assert body["stream"] is True and body["model"] == "claude-opus-4-7" and len(body["tools"]) == 12
    knobs = body["_standin"]
    assert knobs["deltas"] == realtraffic.DELTAS and knobs["gap_ms"] == realtraffic.GAP_MS
    assert (
        knobs["cache_read_input_tokens"]
        == realtraffic.usage(realtraffic.prompt_tokens(captured))["cache_read_input_tokens"]
    )
    assert "_standin" not in captured.body  # the capture itself is untouched
    headers = realtraffic.headers(captured)
    assert "accept-encoding" not in headers and headers["anthropic-beta"].startswith("claude-code-")
    assert realtraffic.query(captured) == "beta=true"


def test_tiny_knobs_are_unchanged_by_the_cache_fields() -> None:
    assert standin.knobs(deltas=1, input_tokens=12, output_tokens=5) == {
        "_standin": {"deltas": 1, "gap_ms": 0, "ttft_ms": 0, "input_tokens": 12, "output_tokens": 5}
    }


def test_the_bench_config_prices_the_cli_default_model_at_list(tmp_path: Path) -> None:
    path = target.write_config(
        tmp_path,
        port=1,
        database_url="postgresql://bench@127.0.0.1:9/gateway",
        upstream_url="http://127.0.0.1:9",
        collector_url="http://127.0.0.1:9",
    )
    book = realtraffic.price_book(path)
    tokens = {
        "input_tokens": 6,
        "cache_read_input_tokens": 21_646,
        "cache_creation_5m_input_tokens": 320,
        "output_tokens": 380,
    }
    # $5 in, $0.50 cache read, $6.25 5-minute write, $25 out per million tokens
    by_hand = math.ceil(6 * 5 + 21_646 * 0.5 + 320 * 6.25 + 380 * 25)
    assert realtraffic.cost_micros(book, "claude-opus-4-7", tokens) == by_hand == 22_353
    assert realtraffic.cap_cents(22_353) == 21  # 9 x 2.2353 cents = 20.1 -> 21 cents, 9.4 requests
    assert realtraffic.cap_cents(22_353, headroom=0) == 1


def _spend(allowed: int, served: int, ledger_micros: int | None) -> dict[str, Any]:
    gateway: dict[str, Any] = {
        "allowed": allowed,
        "overshoot_requests": allowed - 9,
        "standin_usage": {"completed": allowed},
        "standin_usage_with_probe": {"completed": served},
        "ledger_exact": True,
    }
    if ledger_micros is not None:
        gateway["ledger"] = {"cost_micros": ledger_micros, "input_tokens": 0, "output_tokens": 0}
    return {
        "concurrency": 50,
        "headroom_requests": 9,
        "gateway": gateway,
        "peer": {"allowed": 50, "overshoot_requests": 41, "standin_usage_with_probe": {"completed": 51}},
    }


def test_spend_figures_against_the_cap_and_the_list_price() -> None:
    per, cap = 22_353, 21
    out = realtraffic.spend_figures(_spend(10, 10, 10 * per), per, cap)
    assert out["shape"] == "real" and out["cap_micros"] == 210_000
    assert out["headroom_requests"] == 9 and out["headroom_requests_exact"] == pytest.approx(210_000 / per)
    gw, peer = out["gateway"], out["peer"]
    assert gw["final_spend_micros"] == 223_530 and gw["ledger_cost_exact"] is True
    assert gw["spend_vs_cap"] == pytest.approx(223_530 / 210_000)
    assert gw["overshoot_requests"] == 1 and gw["overshoot_micros"] == 13_530
    assert gw["overshoot_cents"] == pytest.approx(1.353)
    # the peer: no ledger of ours; its spend is what the stand-in served it, at list
    assert peer["final_spend_micros"] == 51 * per and peer["spend_vs_cap"] == pytest.approx(51 * per / 210_000)
    assert "ledger_cost_exact" not in peer
    # a ledger one micro-dollar off is not exact
    assert realtraffic.spend_figures(_spend(10, 10, 10 * per + 1), per, cap)["gateway"]["ledger_cost_exact"] is False


def _real(ttfb50: float, gap99: float, p50: float, p99: float, rps: float, cpu: float | None) -> dict[str, Any]:
    summary = {"n": 10, "mean": p50, "min": p50, "max": p99, "p50": p50, "p90": p99, "p99": p99}
    out: dict[str, Any] = {
        "streams": 30,
        "ok": 30,
        "statuses": {"200": 30},
        "all_events_delivered": True,
        "ttfb_ms": {**summary, "p50": ttfb50, "p99": ttfb50 * 2},
        "gap_ms": {**summary, "p99": gap99},
        "latency_ms": summary,
        "total_ms": summary,
        "rps": rps,
    }
    if cpu is not None:
        out["cpu_ms_per_request"] = cpu
    return out


def results_with_real() -> dict[str, Any]:
    results = sample_results()
    real: dict[str, Any] = {}
    for key, scale in (("c1", 1.0), ("c32", 4.0), ("c64", 8.0)):
        figures = {
            "direct": _real(1.0, 5.5, 240.0, 250.0, 4.0 * scale, None),
            "gateway": _real(1.0 + 2 * scale, 7.0, 245.0, 270.0 * scale, 3.5 * scale, 4.0),
            "peer": _real(1.0 + 1 * scale, 6.0, 243.0, 260.0 * scale, 3.8 * scale, 3.0),
        }
        figures["added"] = realtraffic.added(figures)
        real[key] = figures
    results["scenarios"]["real"] = real
    results["scenarios"]["cold_start"]["rss_after_real_mb"] = {"gateway": 100.0, "peer": 200.0}
    results["scenarios"]["spend"] = realtraffic.spend_figures(_spend(10, 10, 10 * 22_353), 22_353, 21)
    results["meta"]["real_request"] = capture.shape(_captured()) | {
        "cli_version": "2.1.333",
        "standin_usage": realtraffic.usage(20_000),
        "cost_micros_at_list": 22_353,
        "pacing": {"deltas": 40, "gap_ms": 5.0},
    }
    return results


def test_added_is_each_target_minus_direct() -> None:
    c32 = results_with_real()["scenarios"]["real"]["c32"]
    assert c32["added"]["gateway"] == pytest.approx(
        {"latency_p50": 5.0, "latency_p99": 830.0, "ttfb_p50": 8.0, "ttfb_p99": 16.0, "gap_p99": 1.5}
    )
    assert set(c32["added"]) == {"gateway", "peer"}


def test_peer_targets_are_ratios_against_the_peer_with_their_factors() -> None:
    verdicts = {t["target"]: t for t in report.peer_targets(results_with_real())}
    cpu = verdicts["CPU-ms per request, real traffic c=32 ≤ peer's"]
    assert cpu["met"] is False and cpu["ratio"] == pytest.approx(4 / 3, abs=1e-3) and cpu["by"] == pytest.approx(1.0)
    tiny = verdicts["CPU-ms per request, tiny c=32 ≤ 1.25 × peer's"]  # 1.1 vs 1.25 x 0.8 = 1.0
    assert tiny["met"] is False and tiny["limit"] == pytest.approx(1.0) and tiny["scenario"] == "tiny"
    thr = verdicts["throughput, real c=32 ≥ peer's"]
    assert thr["met"] is False and thr["ratio"] == pytest.approx(14 / 15.2, abs=1e-3)
    assert verdicts["added latency, real c=1 p50 ≤ peer's"]["met"] is False  # 5 > 3
    assert verdicts["latency p99, real c=32 ≤ peer's"]["met"] is False
    ttfb = verdicts["64 streams: TTFB added p50 ≤ peer's"]
    assert ttfb["gateway"] == pytest.approx(16.0) and ttfb["peer"] == pytest.approx(8.0) and ttfb["met"] is False
    assert verdicts["64 streams: inter-event gap added p99 ≤ peer's"]["met"] is False  # 1.5 > 0.5
    rss = verdicts["RSS after real traffic ≤ 0.6 × peer's"]
    assert rss["met"] is True and rss["limit"] == pytest.approx(120.0) and rss["ratio"] == pytest.approx(0.5)
    assert verdicts["cold start to first 200 ≤ peer's"]["met"] is False  # 1.1 s > 0.3 s
    ratio = verdicts["spend (real): final spend ≤ 1.25 × the cap"]
    assert ratio["met"] is True and ratio["gateway"] == pytest.approx(223_530 / 210_000, abs=1e-3)
    assert ratio["peer"] == pytest.approx(51 * 22_353 / 210_000, abs=1e-3)
    assert verdicts["spend (real): ledger = the upstream's usage priced at list"]["met"] is True


def test_a_negative_peer_figure_has_no_ratio_but_is_still_judged() -> None:
    row = report.versus_peer("x", 0.5, -0.2, "ms")
    assert row["ratio"] is None and row["met"] is False and row["limit"] == pytest.approx(-0.2)
    assert report.versus_peer("y", 1.0, None, "ms")["met"] is None


def test_markdown_carries_the_headline_and_the_done_when_table(tmp_path: Path) -> None:
    results = results_with_real()
    report.finish(results, tmp_path / "latest.json", docs_dir=None)
    text = report.markdown(results)
    assert "Real traffic (the headline)" in text and "12 tools, model claude-opus-4-7" in text
    assert "| real c=32 req/s | 16.0 | 14.0 | 15.2 |  |  |" in text
    assert "| 64 streams: TTFB added p50 ≤ peer's | 16.00 | 8.00 | 2.00 | 8.00 | MISSED | 8.00 |" in text
    assert "RSS after real traffic (MB)" in text and "spend: final spend / cap (0.21 $ cap)" in text
    data = json.loads((tmp_path / "latest.json").read_text())
    assert {"gateway", "peer", "ratio", "limit", "met", "by", "factor"} <= set(data["peer_targets"][0])


def test_a_gateway_that_refuses_below_the_cap_misses_the_allowed_row() -> None:
    results = results_with_real()
    results["scenarios"]["spend"] = realtraffic.spend_figures(_spend(1, 2, 2 * 22_353), 22_353, 21)
    verdicts = {t["target"]: t for t in report.peer_targets(results)}
    allowed = verdicts["spend (real): allowed ≥ the requests the cap holds (no refusal below it)"]
    assert allowed["met"] is False and allowed["gateway"] == 1 and allowed["peer"] == 50 and allowed["limit"] == 9
    assert verdicts["spend (real): final spend ≤ 1.25 × the cap"]["met"] is True  # under the cap, but by refusing


def test_rounds_merge_into_one_run() -> None:
    def raw(wall: float, cpu: float | None, status: str = "200") -> dict[str, Any]:
        out: dict[str, Any] = {
            "wall_s": wall,
            "count": 2,
            "ok": 2 if status == "200" else 0,
            "complete": 2,
            "statuses": {status: 2},
            "errors": [],
            "total_ms": [10.0, 11.0],
            "ttfb_ms": [1.0, 2.0],
            "events": [45, 45],
            "gaps_ms": [5.0],
            "held": [(0.0, 0.5), (0.5, 1.0)],
        }
        if cpu is not None:
            out["cpu_s"] = cpu
        return out

    merged = realtraffic.merge_raw([raw(1.0, 0.25), raw(2.0, 0.5, "429")])
    assert merged["count"] == 4 and merged["ok"] == 2 and merged["statuses"] == {"200": 2, "429": 2}
    assert merged["wall_s"] == 3.0 and merged["cpu_s"] == 0.75 and len(merged["total_ms"]) == 4
    assert merged["held"][2:] == [(1.0, 1.5), (1.5, 2.0)]  # the second round starts after the first
    assert "cpu_s" not in realtraffic.merge_raw([raw(1.0, 0.1), raw(1.0, None)])  # direct: no CPU figure
    assert realtraffic.figures(merged, 45)["rps"] == pytest.approx(2 / 3)


def test_real_traffic_keeps_several_requests_in_flight_per_developer() -> None:
    tokens = [f"t{i}" for i in range(200)]
    assert realtraffic.developers(tokens, 32) == tokens[:8]
    assert realtraffic.developers(tokens, 1) == tokens[:1]
    assert realtraffic.developers(tokens, 64) == tokens[:16]
    assert realtraffic.developers([], 32) == []  # the direct target sends no bearer
