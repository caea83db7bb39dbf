"""The result JSON's shape, the targets' verdicts and the loader's raw-figure summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import loadgen, report, scenarios, spend


def _nonstream(p50: float, p99: float, rps: float, cpu: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "requests": 2000,
        "ok": 2000,
        "statuses": {"200": 2000},
        "errors": [],
        "latency_ms": {
            "n": 2000,
            "mean": p50,
            "min": p50 / 2,
            "max": p99 * 2,
            "p50": p50,
            "p90": (p50 + p99) / 2,
            "p99": p99,
        },
        "rps": rps,
        "wall_s": 2000 / rps,
    }
    if cpu is not None:
        out["cpu_ms_per_request"] = cpu
    return out


def _stream(ttfb50: float, ttfb99: float, gap99: float, delivered: bool = True) -> dict[str, Any]:
    summary = {"n": 10, "mean": 1.0, "min": 0.5, "max": 2.0, "p50": ttfb50, "p90": ttfb99, "p99": ttfb99}
    return {
        "streams": 192,
        "ok": 192,
        "statuses": {"200": 192},
        "errors": [],
        "complete": 192,
        "events_expected": 105,
        "events_min": 105,
        "events_max": 105,
        "all_events_delivered": delivered,
        "ttfb_ms": summary,
        "gap_ms": {**summary, "p99": gap99},
        "total_ms": summary,
        "held_max": 64,
        "wall_s": 3.0,
    }


def sample_results() -> dict[str, Any]:
    c1: dict[str, Any] = {
        "direct": _nonstream(0.5, 1.0, 1500),
        "gateway": _nonstream(1.4, 3.0, 600, 1.2),
        "peer": _nonstream(1.7, 3.5, 500, 0.9),
    }
    c1["added"] = scenarios.with_added(c1, "latency_ms", ["p50", "p90", "p99"])
    c32: dict[str, Any] = {
        "direct": _nonstream(5, 9, 4000),
        "gateway": _nonstream(40, 90, 800, 1.1),
        "peer": _nonstream(25, 60, 1150, 0.8),
    }
    c32["added"] = scenarios.with_added(c32, "latency_ms", ["p50", "p90", "p99"])
    st: dict[str, Any] = {
        "direct": _stream(1.0, 3.0, 11.0),
        "gateway": _stream(3.5, 9.0, 11.5),
        "peer": _stream(4.0, 8.0, 11.2),
    }
    st["added"] = {
        n: {
            "ttfb_p50": st[n]["ttfb_ms"]["p50"] - 1.0,
            "ttfb_p99": st[n]["ttfb_ms"]["p99"] - 3.0,
            "gap_p99": st[n]["gap_ms"]["p99"] - 11.0,
        }
        for n in ("gateway", "peer")
    }
    return {
        "meta": {
            "nproc": 2,
            "cpu_model": "test",
            "memory_gb": 24,
            "threads": 40,
            "threads_source": "test",
            "peer": {"present": True, "version": "x", "spender_token": "secret"},
        },
        "scenarios": {
            "nonstream_c1": c1,
            "nonstream_c32": c32,
            "stream_c64": st,
            "cold_start": {
                "gateway": {"first_200_s": [1.2, 1.0, 1.1], "first_200_s_median": 1.1},
                "peer": {"first_200_s": [0.3], "first_200_s_median": 0.3},
                "rss_after_warmup_mb": {"gateway": 70.0, "peer": 160.0},
                "rss_after_stream_mb": {"gateway": 90.0, "peer": 170.0},
                "import_ms": {"messages": {"median_ms": 180.0}},
            },
            "spend": {
                "concurrency": 50,
                "headroom_requests": 10,
                "cents_per_request": 3,
                "cap_cents": 30,
                "gateway": {
                    "statuses": {"200": 12, "429": 38},
                    "allowed": 12,
                    "overshoot_requests": 2,
                    "ledger": {"input_tokens": 24000, "output_tokens": 19200},
                    "standin_usage": {"input_tokens": 24000, "output_tokens": 19200},
                    "ledger_exact": True,
                },
                "peer": {"statuses": {"200": 60}, "allowed": 60, "overshoot_requests": 50},
            },
        },
    }


def test_targets_judge_each_figure_with_its_margin() -> None:
    verdicts = {t["target"]: t for t in report.targets(sample_results())}
    c1 = verdicts["added latency c=1 p50 ≤ peer's"]
    assert c1["met"] is True and c1["measured"] == pytest.approx(0.9) and c1["by"] == pytest.approx(-0.3)
    thr = verdicts["throughput c=32 ≥ peer's (ratio ≥ 1.0)"]
    assert thr["met"] is False and thr["measured"] == pytest.approx(800 / 1150, abs=1e-3)
    assert verdicts["streaming TTFB added p50 ≤ 3 ms"]["met"] is True
    assert verdicts["streaming TTFB added p99 ≤ peer's"]["met"] is False  # 6 > 5
    assert verdicts["inter-event gap added p99 ≤ 1 ms"]["met"] is True
    assert verdicts["cold start to first response ≤ 1.5 s"]["met"] is True
    assert verdicts["resident memory ≤ half the peer's"]["met"] is False  # 90 > 85
    assert verdicts["spend: ledger exact (= the stand-in's own usage count)"]["met"] is True
    assert verdicts["spend: overshoot ≤ the peer's (requests over the cap)"]["met"] is True


def test_targets_without_a_peer_are_not_judged() -> None:
    results = sample_results()
    for key in ("nonstream_c1", "nonstream_c32", "stream_c64"):
        del results["scenarios"][key]["peer"]
        results["scenarios"][key]["added"].pop("peer")
    verdicts = {t["target"]: t for t in report.targets(results)}
    assert verdicts["added latency c=1 p50 ≤ peer's"]["met"] is None
    assert verdicts["streaming TTFB added p50 ≤ 3 ms"]["met"] is True  # absolute targets still judged


def test_result_json_shape(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    report.finish(sample_results(), path, docs_dir=None)
    data = json.loads(path.read_text())
    assert set(data) == {"meta", "scenarios", "targets", "peer_targets"}
    assert "spender_token" not in data["meta"]["peer"]  # no credentials in results
    for key in ("nonstream_c1", "nonstream_c32"):
        for column in ("direct", "gateway", "peer"):
            assert {"p50", "p90", "p99"} <= set(data["scenarios"][key][column]["latency_ms"])
            assert isinstance(data["scenarios"][key][column]["rps"], int | float)
        assert set(data["scenarios"][key]["added"]) == {"gateway", "peer"}
    assert {"ttfb_p50", "ttfb_p99", "gap_p99"} == set(data["scenarios"]["stream_c64"]["added"]["gateway"])
    assert all({"target", "measured", "limit", "unit", "met", "by"} == set(t) for t in data["targets"])


def test_docs_and_table_render(tmp_path: Path) -> None:
    results = sample_results()
    report.samples["nonstream_c1"] = {"direct": [0.4, 0.5, 0.6], "gateway": [1.2, 1.4, 2.0]}
    report.finish(results, tmp_path / "latest.json", docs_dir=tmp_path)
    text = (tmp_path / "performance.md").read_text()
    assert "| non-streaming c=1 latency p50 (ms) | 0.50 | 1.40 | 1.70 | 0.90 | 1.20 |" in text
    assert "MISSED" in text and "2 cores" in text
    assert (tmp_path / "bench-latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loadgen_summary_keeps_only_successes_for_latency() -> None:
    ok = loadgen.Sample(200, 5.0, 1.0, 0.0, 0.001, 0.005, 3, True, [0.001, 0.002, 0.004])
    refused = loadgen.Sample(429, 1.0, 0.5, 0.0, 0.0005, 0.001, 0, True, [])
    raw = loadgen.summarize([ok, refused], wall_s=2.0)
    assert raw["statuses"] == {"200": 1, "429": 1}
    assert raw["total_ms"] == [5.0] and raw["ok"] == 1
    assert raw["gaps_ms"] == pytest.approx([1.0, 2.0])
    assert raw["held"] == [(0.001, 0.005)]


def test_spend_helpers() -> None:
    assert spend.usage_delta(
        {"usage": {"input_tokens": 5}, "requests": 2}, {"usage": {"input_tokens": 12}, "requests": 3, "ok": True}
    ) == {
        "usage": {"input_tokens": 7},
        "requests": 1,
    }
    assert spend.ledger_matches(
        {"input_tokens": 7, "output_tokens": 3}, {"usage": {"input_tokens": 7, "output_tokens": 3}}
    )
    assert not spend.ledger_matches({"input_tokens": 7, "output_tokens": 2}, {"input_tokens": 7, "output_tokens": 3})
    assert not spend.ledger_matches({"error": "no table"}, {"input_tokens": 0, "output_tokens": 0})


def test_importtime_parsing() -> None:
    text = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |   _io",
            "import time:       500 |      90000 |   flask",
            "import time:     39700 |      40000 |     werkzeug",
            "import time:      1000 |       1000 |       werkzeug.routing",
            "import time:       200 |     150000 | main",
            "import time:       900 |      30000 |   common.config",
            "import time:       300 |       3000 |   common",
        ]
    )
    top = scenarios.parse_importtime(text)
    assert top[0] == {"package": "werkzeug", "self_ms": 40.7}
    assert [t["package"] for t in top] == ["werkzeug", "common", "flask", "main", "_io"]


def test_profile_summary_shares() -> None:
    collapsed = "main (a.py:1);handle (a.py:2);jwt_decode (j.py:5) 30\nmain (a.py:1);handle (a.py:9);db 50\nmain (a.py:1);idle 20\n"
    s = report.summarize_profile(collapsed, top=3)
    assert s["samples"] == 100
    assert s["inclusive"][0] == {"frame": "main (a.py)", "percent": 100.0}
    assert {"frame": "handle (a.py)", "percent": 80.0} in s["inclusive"]
    assert {"frame": "db", "percent": 50.0} in s["self"]


def test_splice_keeps_hand_written_text_outside_the_markers() -> None:
    first = report.splice("", "figures v1")
    assert first.startswith(report.BEGIN) and "figures v1" in first
    edited = "# Title\n\n" + first + "\n## Where the time goes\nhand-written\n"
    second = report.splice(edited, "figures v2")
    assert "figures v1" not in second and "figures v2" in second
    assert second.startswith("# Title\n") and second.endswith("## Where the time goes\nhand-written\n")
    assert report.splice(second, "figures v2") == second  # idempotent


def test_production_threads_follow_terraform(tmp_path: Path) -> None:
    from bench import target

    assert target.production_threads(tmp_path)[0] == target.DEFAULT_THREADS
    (tmp_path / "terraform").mkdir()
    (tmp_path / "terraform" / "variables.tf").write_text(
        'default = {\n    auth     = { cpu = "1", concurrency = 20 }\n'
        '    messages = { cpu = "1", memory = "1Gi", concurrency = 64, max_instances = 50 }\n}\n'
    )
    threads, source = target.production_threads(tmp_path)
    assert threads == 64 and source == "terraform/variables.tf"


def test_workers_and_threads_are_sized_per_vcpu_as_terraform_does(tmp_path: Path) -> None:
    from bench import target

    assert target.production_cpu(tmp_path) == target.DEFAULT_CPU
    (tmp_path / "terraform").mkdir()
    (tmp_path / "terraform" / "variables.tf").write_text(
        '    messages = { cpu = "2", memory = "1Gi", concurrency = 80, max_instances = 50 }\n'
    )
    assert target.production_cpu(tmp_path) == 2.0
    # terraform/functions.tf: WORKERS = max(1, floor(cpu)), THREADS = ceil(concurrency / WORKERS)
    assert target.sizing(1, 80) == (1, 80)
    assert target.sizing(2, 80) == (2, 40)
    assert target.sizing(4, 90) == (4, 23)
    assert target.sizing(0.5, 80) == (1, 80)
    assert target.env(tmp_path / "gateway.yaml", 40, workers=2)["WORKERS"] == "2"


def test_probe_table_sums_the_processes_and_the_page_renders_it() -> None:
    from bench import probe

    dumps = [
        {"rows": {"stream: usage scan": [40, 0.004], "handler: route": [2, 0.0002]}, "process_cpu_s": 0.01},
        {"rows": {"stream: usage scan": [40, 0.004]}, "process_cpu_s": 0.01},
    ]
    figures = probe.table(dumps, requests=2)
    assert figures["process_cpu_ms_per_request"] == 10.0
    scan = next(r for r in figures["rows"] if r["label"] == "stream: usage scan")
    assert (scan["calls_per_request"], scan["ms_per_request"], scan["us_per_call"]) == (40.0, 4.0, 100.0)
    page = report.attribution_md(figures)
    assert "| stream: usage scan | 40.00 | 4.000 | 100.0 |" in page
    assert report.attribution_md(None) == ""  # a run without --attribute adds nothing to the page
