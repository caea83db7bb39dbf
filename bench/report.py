"""The benchmark's output: latest.json, the Markdown table, the chart and docs/performance.md.

`targets(results)` judges each target of issue 8 (met / missed by how much)
and `peer_targets(results)` each "Done when" of issue 13 (our figure against
the peer's in the same run, as a ratio), from the figures alone, so the
table, the JSON and the docs say the same. The real-traffic scenario (the
request the real CLI sends, `bench.realtraffic`) is the headline; the tiny
scenarios 1 and 2 are the floor figures.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import procs, stats

# Raw samples of the last run, for the chart only (not written to the JSON).
samples: dict[str, dict[str, list[float]]] = defaultdict(dict)

SCHEMA_VERSION = 1
COLUMNS = ("direct", "gateway", "peer")


# --- the machine ----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    commit = ""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=procs.ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "schema": SCHEMA_VERSION,
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "git_commit": commit,
        "load_average_at_start": [round(x, 2) for x in load],
    }


def collector_stats(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_collector/stats", timeout=5) as response:
            return dict(json.load(response))
    except OSError as exc:
        return {"error": str(exc)}


# --- one-line progress summaries ------------------------------------------------------------


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def brief_nonstream(f: dict[str, Any]) -> str:
    lat = f["latency_ms"]
    cpu = f.get("cpu_ms_per_request")
    return (
        f"p50 {_f(lat['p50'])} ms, p90 {_f(lat['p90'])} ms, p99 {_f(lat['p99'])} ms, {_f(f['rps'], 0)} req/s"
        + (f", {_f(cpu)} CPU-ms/req" if cpu is not None else "")
        + (f", statuses {f['statuses']}" if set(f["statuses"]) != {"200"} else "")
    )


def brief_stream(f: dict[str, Any]) -> str:
    return (
        f"TTFB p50 {_f(f['ttfb_ms']['p50'])} p99 {_f(f['ttfb_ms']['p99'])} ms, gap p99 {_f(f['gap_ms']['p99'])} ms, "
        f"held {f['held_max']}, events {f['events_min']}..{f['events_max']}, all delivered: {f['all_events_delivered']}"
        + (f", statuses {f['statuses']}" if set(f["statuses"]) != {"200"} else "")
    )


def brief_real(f: dict[str, Any]) -> str:
    cpu = f.get("cpu_ms_per_request")
    return (
        f"total p50 {_f(f['latency_ms']['p50'])} p99 {_f(f['latency_ms']['p99'])} ms, "
        f"TTFB p50 {_f(f['ttfb_ms']['p50'])} p99 {_f(f['ttfb_ms']['p99'])} ms, gap p99 {_f(f['gap_ms']['p99'])} ms, "
        f"{_f(f['rps'], 1)} req/s"
        + (f", {_f(cpu)} CPU-ms/req" if cpu is not None else "")
        + f", all delivered: {f['all_events_delivered']}"
        + (f", statuses {f['statuses']}" if set(f["statuses"]) != {"200"} else "")
    )


def brief_shape(shape: dict[str, Any]) -> str:
    return (
        f"{shape.get('bytes')} bytes, {shape.get('tools')} tools, model {shape.get('model')}, "
        f"max_tokens {shape.get('max_tokens')}, stream {shape.get('stream')}, thinking {shape.get('thinking')}, "
        f"betas {','.join(shape.get('betas') or []) or 'none'}"
    )


def brief_imports(imports: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_f(v.get('median_ms'), 0)} ms" for k, v in imports.items())


def brief_spend(s: dict[str, Any]) -> str:
    parts = []
    for name in ("gateway", "peer"):
        if name in s:
            f = s[name]
            parts.append(
                f"{name}: {f['allowed']} allowed of {s['concurrency']} (headroom {s['headroom_requests']}),"
                f" overshoot {f['overshoot_requests']} requests"
                + (f", final spend {_f(f['spend_vs_cap'])} x the cap" if f.get("spend_vs_cap") is not None else "")
                + (f", ledger exact: {f['ledger_exact']}" if "ledger_exact" in f else "")
                + (f", ledger cost = usage at list: {f['ledger_cost_exact']}" if "ledger_cost_exact" in f else "")
            )
    return "; ".join(parts) or "no gateway ran"


# --- targets ------------------------------------------------------------------------------------


def _get(d: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def judge(
    name: str, measured: float | None, limit: float | None, unit: str, lower_is_better: bool = True
) -> dict[str, Any]:
    """One target: met when measured is on the right side of limit; `by` is how far off (or under)."""
    if measured is None or limit is None or math.isnan(measured) or math.isnan(limit):
        return {
            "target": name,
            "measured": stats.rounded(measured) if measured is not None else None,
            "limit": limit,
            "unit": unit,
            "met": None,
            "by": None,
        }
    met = measured <= limit if lower_is_better else measured >= limit
    by = measured - limit if lower_is_better else limit - measured
    return {
        "target": name,
        "measured": stats.rounded(measured),
        "limit": stats.rounded(limit),
        "unit": unit,
        "met": met,
        "by": stats.rounded(by),
    }


def _tokens(usage: dict[str, Any] | None) -> str | None:
    if not usage:
        return None
    if "error" in usage:
        return f"error: {usage['error']}"
    return f"in {usage.get('input_tokens')} / out {usage.get('output_tokens')} tokens"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    sc = results.get("scenarios", {})
    c1, c32, st = sc.get("nonstream_c1", {}), sc.get("nonstream_c32", {}), sc.get("stream_c64", {})
    cold, spend = sc.get("cold_start", {}), sc.get("spend", {})
    out = [
        judge(
            "added latency c=1 p50 ≤ peer's",
            _get(c1, "added", "gateway", "p50"),
            _get(c1, "added", "peer", "p50"),
            "ms",
        ),
        judge(
            "throughput c=32 ≥ peer's (ratio ≥ 1.0)",
            stats.ratio(_get(c32, "gateway", "rps") or math.nan, _get(c32, "peer", "rps") or math.nan),
            1.0,
            "ratio",
            lower_is_better=False,
        ),
        judge(
            "p99 c=32 ≤ peer's", _get(c32, "gateway", "latency_ms", "p99"), _get(c32, "peer", "latency_ms", "p99"), "ms"
        ),
        judge("streaming TTFB added p50 ≤ 3 ms", _get(st, "added", "gateway", "ttfb_p50"), 3.0, "ms"),
        judge(
            "streaming TTFB added p99 ≤ peer's",
            _get(st, "added", "gateway", "ttfb_p99"),
            _get(st, "added", "peer", "ttfb_p99"),
            "ms",
        ),
        judge("inter-event gap added p99 ≤ 1 ms", _get(st, "added", "gateway", "gap_p99"), 1.0, "ms"),
    ]
    gw_stream = _get(st, "gateway") or {}
    delivered = gw_stream.get("all_events_delivered")
    out.append(
        {
            "target": "streaming: no errors, every event delivered",
            "measured": f"{gw_stream.get('ok')}/{gw_stream.get('streams')} ok, events {gw_stream.get('events_min')}..{gw_stream.get('events_max')}",
            "limit": f"{gw_stream.get('streams')}/{gw_stream.get('streams')} ok, {gw_stream.get('events_expected')} events",
            "unit": "",
            "met": delivered,
            "by": None,
        }
    )
    out.append(judge("cold start to first response ≤ 1.5 s", _get(cold, "gateway", "first_200_s_median"), 1.5, "s"))
    gw_rss = _get(cold, "rss_after_stream_mb", "gateway")
    peer_rss = _get(cold, "rss_after_stream_mb", "peer")
    out.append(judge("resident memory ≤ half the peer's", gw_rss, (peer_rss / 2) if peer_rss else None, "MB"))
    gw_spend = spend.get("gateway") or {}
    out.append(
        {
            "target": "spend: ledger exact (= the stand-in's own usage count)",
            "measured": _tokens(gw_spend.get("ledger")),
            # what the ledger is compared with: the burst and the probe after it
            "limit": _tokens(gw_spend.get("standin_usage_with_probe") or gw_spend.get("standin_usage")),
            "unit": "",
            "met": gw_spend.get("ledger_exact"),
            "by": None,
        }
    )
    peer_over = _get(spend, "peer", "overshoot_requests")
    out.append(
        judge(
            "spend: overshoot ≤ the peer's (requests over the cap)",
            gw_spend.get("overshoot_requests"),
            peer_over,
            "requests",
        )
    )
    return out


def versus_peer(
    name: str,
    ours: float | None,
    theirs: float | None,
    unit: str,
    *,
    factor: float = 1.0,
    lower_is_better: bool = True,
    scenario: str = "real",
) -> dict[str, Any]:
    """One "Done when" of issue 13: ours against `factor` x the peer's figure of the same run.

    `ratio` is ours / the peer's (shown only when both are positive: an added latency can be
    negative, where a ratio says nothing); `limit` is factor x the peer's; `by` how far ours
    is on the wrong side of it (negative: met with that margin)."""
    judged = judge(
        name,
        ours,
        theirs * factor if theirs is not None and not math.isnan(theirs) else None,
        unit,
        lower_is_better=lower_is_better,
    )
    ratio = None
    if ours is not None and theirs is not None and ours > 0 and theirs > 0:
        ratio = stats.rounded(ours / theirs)
    return judged | {
        "gateway": stats.rounded(ours) if ours is not None else None,
        "peer": stats.rounded(theirs) if theirs is not None else None,
        "ratio": ratio,
        "factor": factor,
        "scenario": scenario,
    }


def peer_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 13's "Done when", each against the peer in the same run (real traffic is the headline)."""
    sc = results.get("scenarios", {})
    real = sc.get("real", {})
    c1, c32, c64 = real.get("c1", {}), real.get("c32", {}), real.get("c64", {})
    tiny = sc.get("nonstream_c32", {})
    cold, spend = sc.get("cold_start", {}), sc.get("spend", {})
    rss = cold.get("rss_after_real_mb") or cold.get("rss_after_stream_mb") or {}

    def both(figures: dict[str, Any], *keys: str) -> tuple[float | None, float | None]:
        return _get(figures, "gateway", *keys), _get(figures, "peer", *keys)

    out = [
        versus_peer("CPU-ms per request, real traffic c=32 ≤ peer's", *both(c32, "cpu_ms_per_request"), "ms"),
        versus_peer(
            "CPU-ms per request, tiny c=32 ≤ 1.25 × peer's",
            *both(tiny, "cpu_ms_per_request"),
            "ms",
            factor=1.25,
            scenario="tiny",
        ),
        versus_peer("throughput, real c=32 ≥ peer's", *both(c32, "rps"), "req/s", lower_is_better=False),
        versus_peer(
            "added latency, real c=1 p50 ≤ peer's",
            _get(c1, "added", "gateway", "latency_p50"),
            _get(c1, "added", "peer", "latency_p50"),
            "ms",
        ),
        versus_peer("latency p99, real c=32 ≤ peer's", *both(c32, "latency_ms", "p99"), "ms"),
        versus_peer(
            "64 streams: TTFB added p50 ≤ peer's",
            _get(c64, "added", "gateway", "ttfb_p50"),
            _get(c64, "added", "peer", "ttfb_p50"),
            "ms",
        ),
        versus_peer(
            "64 streams: inter-event gap added p99 ≤ peer's",
            _get(c64, "added", "gateway", "gap_p99"),
            _get(c64, "added", "peer", "gap_p99"),
            "ms",
        ),
        versus_peer(
            "RSS after real traffic ≤ 0.6 × peer's" if "rss_after_real_mb" in cold else "RSS ≤ 0.6 × peer's",
            rss.get("gateway"),
            rss.get("peer"),
            "MB",
            factor=0.6,
        ),
        versus_peer(
            "cold start to first 200 ≤ peer's",
            _get(cold, "gateway", "first_200_s_median"),
            _get(cold, "peer", "first_200_s_median"),
            "s",
            scenario="cold",
        ),
    ]
    gw, pr = spend.get("gateway") or {}, spend.get("peer") or {}
    shape = spend.get("shape", "tiny")
    # not a peer ratio: the other half of "exact spend", no refusal while the budget still holds requests
    allowed_row = judge(
        f"spend ({shape}): allowed ≥ the requests the cap holds (no refusal below it)",
        gw.get("allowed"),
        spend.get("headroom_requests"),
        "requests",
        lower_is_better=False,
    )
    out.append(
        allowed_row
        | {"gateway": gw.get("allowed"), "peer": pr.get("allowed"), "ratio": None, "factor": None, "scenario": "spend"}
    )
    ratio_row = judge(f"spend ({shape}): final spend ≤ 1.25 × the cap", gw.get("spend_vs_cap"), 1.25, "× cap")
    out.append(
        ratio_row
        | {
            "gateway": stats.rounded(gw["spend_vs_cap"]) if gw.get("spend_vs_cap") is not None else None,
            "peer": stats.rounded(pr["spend_vs_cap"]) if pr.get("spend_vs_cap") is not None else None,
            "ratio": None,
            "factor": None,
            "scenario": "spend",
        }
    )
    exact = gw.get("ledger_cost_exact", gw.get("ledger_exact"))
    out.append(
        {
            "target": f"spend ({shape}): ledger = the upstream's usage priced at list",
            "measured": _micros(_get(gw, "ledger", "cost_micros")),
            "limit": _micros(gw.get("served_micros")),
            "unit": "",
            "met": exact,
            "by": None,
            "gateway": _micros(_get(gw, "ledger", "cost_micros")),
            "peer": None,
            "ratio": None,
            "factor": None,
            "scenario": "spend",
        }
    )
    return out


def _micros(value: Any) -> str | None:
    return f"{int(value)} µ$" if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- JSON, Markdown, chart, docs ------------------------------------------------------------------


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf to null, floats rounded, tuples to lists."""
    if isinstance(value, float):
        return stats.rounded(value, 3)
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def finish(results: dict[str, Any], json_path: Path, docs_dir: Path | None) -> None:
    results["meta"]["peer"] = {k: v for k, v in results["meta"].get("peer", {}).items() if k != "spender_token"}
    results["targets"] = targets(results)
    results["peer_targets"] = peer_targets(results)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(clean(results), indent=2) + "\n")
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        chart(docs_dir / "bench-latency.png", results)
        page = docs_dir / "performance.md"
        page.write_text(splice(page.read_text() if page.exists() else "", performance_md(results)))


def _cell(figures: dict[str, Any] | None, *keys: str, digits: int = 2) -> str:
    if figures is None:
        return "—"
    return _f(_get(figures, *keys), digits)


def real_rows(results: dict[str, Any]) -> list[list[str]]:
    """The headline table: the real CLI's request, streamed, at each concurrency."""
    real = _get(results, "scenarios", "real") or {}
    rows: list[list[str]] = []
    for key in sorted(real, key=lambda k: int(k.lstrip("c"))):
        s = real[key]
        label = f"real c={key.lstrip('c')}"
        added = s.get("added") or {}
        for what, figure, pct, add_key in (
            ("latency", "latency_ms", "p50", "latency_p50"),
            ("latency", "latency_ms", "p99", "latency_p99"),
            ("TTFB", "ttfb_ms", "p50", "ttfb_p50"),
            ("TTFB", "ttfb_ms", "p99", "ttfb_p99"),
            ("inter-event gap", "gap_ms", "p99", "gap_p99"),
        ):
            rows.append(
                [f"{label} {what} {pct} (ms)"]
                + [_cell(s.get(c), figure, pct) for c in COLUMNS]
                + [_cell(added, "gateway", add_key), _cell(added, "peer", add_key)]
            )
        rows.append([f"{label} req/s"] + [_cell(s.get(c), "rps", digits=1) for c in COLUMNS] + ["", ""])
        rows.append(
            [f"{label} CPU-ms per request"] + [_cell(s.get(c), "cpu_ms_per_request") for c in COLUMNS] + ["", ""]
        )
        rows.append(
            [f"{label} all events delivered"]
            + [
                (
                    f"{'yes' if s[c]['all_events_delivered'] else 'NO'} ({s[c]['ok']}/{s[c]['streams']})"
                    if c in s
                    else "—"
                )
                for c in COLUMNS
            ]
            + ["", ""]
        )
    cold = _get(results, "scenarios", "cold_start") or {}
    for key, label in (
        ("rss_after_real_mb", "RSS after real traffic (MB)"),
        ("pss_after_real_mb", "PSS after real traffic (MB; shared pages once)"),
    ):
        if key in cold:
            rows.append([label, "—", _cell(cold, key, "gateway", digits=1), _cell(cold, key, "peer", digits=1), "", ""])
    return rows


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    sc = results.get("scenarios", {})
    rows: list[list[str]] = []
    for key, label in (("nonstream_c1", "non-streaming c=1"), ("nonstream_c32", "non-streaming c=32")):
        s = sc.get(key, {})
        for p in ("p50", "p90", "p99"):
            rows.append(
                [f"{label} latency {p} (ms)"]
                + [_cell(s.get(c), "latency_ms", p) for c in COLUMNS]
                + [_cell(s.get("added"), "gateway", p), _cell(s.get("added"), "peer", p)]
            )
        rows.append([f"{label} req/s"] + [_cell(s.get(c), "rps", digits=0) for c in COLUMNS] + ["", ""])
        rows.append(
            [f"{label} CPU-ms per request"] + [_cell(s.get(c), "cpu_ms_per_request") for c in COLUMNS] + ["", ""]
        )
    st = sc.get("stream_c64", {})
    for p in ("p50", "p99"):
        rows.append(
            [f"streaming TTFB {p} (ms)"]
            + [_cell(st.get(c), "ttfb_ms", p) for c in COLUMNS]
            + [_cell(st.get("added"), "gateway", f"ttfb_{p}"), _cell(st.get("added"), "peer", f"ttfb_{p}")]
        )
    rows.append(
        ["streaming inter-event gap p99 (ms)"]
        + [_cell(st.get(c), "gap_ms", "p99") for c in COLUMNS]
        + [_cell(st.get("added"), "gateway", "gap_p99"), _cell(st.get("added"), "peer", "gap_p99")]
    )
    rows.append(["streaming streams held at once"] + [_cell(st.get(c), "held_max") for c in COLUMNS] + ["", ""])
    rows.append(
        ["streaming all events delivered"]
        + [
            (
                f"{'yes' if st[c]['all_events_delivered'] else 'NO'} ({st[c]['ok']}/{st[c]['streams']})"
                if c in st
                else "—"
            )
            for c in COLUMNS
        ]
        + ["", ""]
    )
    cold = sc.get("cold_start", {})
    rows.append(
        [
            "cold start to first 200 (s, median)",
            "—",
            _cell(cold, "gateway", "first_200_s_median"),
            _cell(cold, "peer", "first_200_s_median"),
            "",
            "",
        ]
    )
    rows.append(
        [
            "RSS after warm-up (MB)",
            "—",
            _cell(cold, "rss_after_warmup_mb", "gateway", digits=1),
            _cell(cold, "rss_after_warmup_mb", "peer", digits=1),
            "",
            "",
        ]
    )
    rows.append(
        [
            "RSS after scenario 2 (MB)",
            "—",
            _cell(cold, "rss_after_stream_mb", "gateway", digits=1),
            _cell(cold, "rss_after_stream_mb", "peer", digits=1),
            "",
            "",
        ]
    )
    for name, figures in (cold.get("import_ms") or {}).items():
        rows.append([f"import functions/{name}/main.py (ms)", "—", _f(figures.get("median_ms"), 0), "—", "", ""])
    spend = sc.get("spend", {})
    if spend:
        rows.append(
            [f"spend: allowed of {spend['concurrency']} (headroom {spend['headroom_requests']})", "—"]
            + [_cell(spend.get(c), "allowed") for c in ("gateway", "peer")]
            + ["", ""]
        )
        rows.append(
            ["spend: overshoot (requests over cap)", "—"]
            + [_cell(spend.get(c), "overshoot_requests") for c in ("gateway", "peer")]
            + ["", ""]
        )
        rows.append(["spend: ledger = stand-in usage", "—", _f(_get(spend, "gateway", "ledger_exact")), "—", "", ""])
        if "cap_micros" in spend:
            rows.append(
                [f"spend: final spend / cap ({_f(spend['cap_cents'] / 100)} $ cap)", "—"]
                + [_cell(spend.get(c), "spend_vs_cap") for c in ("gateway", "peer")]
                + ["", ""]
            )
            rows.append(
                [
                    "spend: ledger cost = served usage at list",
                    "—",
                    _f(_get(spend, "gateway", "ledger_cost_exact")),
                    "—",
                    "",
                    "",
                ]
            )
    return rows


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |\n"


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    head = "| figure | direct | gateway | peer | gateway adds | peer adds |\n|---|---:|---:|---:|---:|---:|\n"
    body = "".join(_row(row) for row in table_rows(results))
    lines = [
        f"Machine: {meta.get('nproc')} cores ({meta.get('cpu_model')}), {meta.get('memory_gb')} GB; "
        f"WORKERS={meta.get('workers', 1)} x THREADS={meta.get('threads')} ({meta.get('threads_source')})"
        f"{_pinned(meta)}; upstream {meta.get('upstream')}; "
        f"spend enforcement: {meta.get('spend_enforcement')}; peer: {_peer_line(meta.get('peer', {}))}",
        "",
    ]
    shape = meta.get("real_request")
    real = real_rows(results)
    if shape and real:
        lines += [
            f"Real traffic (the headline): the request of Claude Code {shape.get('cli_version')}, captured at bench "
            f"time: {brief_shape(shape)}; stand-in usage {shape.get('standin_usage')} "
            f"({_micros(shape.get('cost_micros_at_list'))} a request at list).",
            "",
            head + "".join(_row(row) for row in real),
        ]
    elif meta.get("capture_error"):
        lines += [f"Real traffic: not run ({meta['capture_error'].splitlines()[-1][:200]}).", ""]
    lines += [
        "Issue 13, done when (ours against the peer in this run):",
        "",
        "| target | gateway | peer | ratio | limit | met | by |\n|---|---:|---:|---:|---:|:-:|---:|",
    ]
    for t in results.get("peer_targets", []):
        met = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        lines.append(
            f"| {t['target']} | {_f(t.get('gateway'))} | {_f(t.get('peer'))} | {_f(t.get('ratio'))} "
            f"| {_f(t['limit'])} | {met} | {_f(t['by'])} |"
        )
    lines += [
        "",
        "Floor figures (tiny requests) and spend:",
        "",
        head + body,
        "| target | measured | limit | met | by |\n|---|---:|---:|:-:|---:|",
    ]
    for t in results.get("targets", []):
        met = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        unit = f" {t['unit']}" if t["unit"] and t["measured"] is not None and not isinstance(t["measured"], str) else ""
        lines.append(f"| {t['target']} | {_f(t['measured'])}{unit} | {_f(t['limit'])} | {met} | {_f(t['by'])} |")
    return "\n".join(lines) + "\n"


def _peer_line(info: dict[str, Any]) -> str:
    if info.get("present"):
        return f"{info.get('version', '?')} (spend caps: {info.get('caps')})"
    return "absent" + (f" ({info['error'].splitlines()[0][:200]})" if info.get("error") else "")


def chart(path: Path, results: dict[str, Any]) -> None:
    """Latency distributions (empirical CDFs, log x) of direct vs gateway vs peer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("nonstream_c1", "non-streaming, concurrency 1: total latency"),
        ("nonstream_c32", "non-streaming, concurrency 32: total latency"),
        ("stream_ttfb", "streaming, 64 concurrent: time to first byte"),
        ("stream_gaps", "streaming, 64 concurrent: gap between events"),
    )
    colors = {"direct": "#555555", "gateway": "#d95f02", "peer": "#1b9e77"}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for name in COLUMNS:
            values = sorted(v for v in samples.get(key, {}).get(name, []) if v > 0)
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            p50 = stats.percentile(values, 50)
            ax.step(values, ys, where="post", color=colors[name], label=f"{name} (p50 {p50:.2f} ms)")
        ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("milliseconds (log scale)")
        ax.set_ylabel("fraction of requests ≤ x")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
    meta = results["meta"]
    fig.suptitle(
        f"Claude apps gateway vs direct vs peer — {meta.get('nproc')} cores {meta.get('cpu_model')}, "
        f"WORKERS={meta.get('workers', 1)} x THREADS={meta.get('threads')}, {meta.get('date_utc')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


BEGIN = "<!-- bench:begin (generated by `make bench`; edit outside these markers) -->"
END = "<!-- bench:end -->"


def splice(page: str, generated: str) -> str:
    """`page` with the text between the markers replaced; hand-written text outside them is kept."""
    block = f"{BEGIN}\n{generated.rstrip()}\n{END}\n"
    start, end = page.find(BEGIN), page.find(END)
    if start == -1 or end == -1 or end < start:
        return block + (f"\n{page}" if page.strip() else "")
    rest = page[end + len(END) :].removeprefix("\n")
    return page[:start] + block + rest


def _imports_line(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r.get('package')} {r.get('self_ms')} ms" for r in rows) or "not measured"


def performance_md(results: dict[str, Any]) -> str:
    meta = results["meta"]
    return f"""# Performance: what the gateway costs

Generated by `make bench` (`python -m bench`) on {meta.get("date_utc")} at commit `{meta.get("git_commit")}`;
rerun it to refresh this page, the chart and `bench/results/latest.json`. Every figure comes from one run
in which each scenario ran against the model stand-in directly, through our gateway and (when the Claude
Code binary was present) through Anthropic's own gateway (`claude gateway`, the peer). "Adds" columns are
differences of percentiles against the direct run.

## Machine
- {meta.get("nproc")} cores (`nproc`), CPU {meta.get("cpu_model")}, {meta.get("memory_gb")} GB memory, Python {meta.get("python")}, kernel {meta.get("kernel")}.
- Everything co-located on loopback: load generator, model stand-in, embedded PostgreSQL, collector stand-in,
  the gateways. The machine is shared (load average at start {meta.get("load_average_at_start")}, at end {meta.get("load_average_at_end")}), so figures move
  by some percent between runs; the comparison within one run is what counts.
- Our gateway: the `messages` function under functions-framework's gunicorn (gthread) with
  WORKERS={meta.get("workers", 1)} x THREADS={meta.get("threads")} ({meta.get("threads_source")}){_pinned(meta)}, real PostgreSQL, spend caps on every simulated
  user ({meta.get("users")} users, one session token each; enforcement: {meta.get("spend_enforcement")}), telemetry
  exported to a collector stand-in ({_get(meta, "collector", "posts")} OTLP posts received), upstream kind `{meta.get("upstream")}`.
- Peer: {_peer_line(meta.get("peer", {}))}.

## Figures

![latency distributions](bench-latency.png)

{markdown(results)}
{attribution_md(results.get("attribution"))}Import cost of `functions/messages/main.py` by package (self time, one fresh interpreter):
{_imports_line(_get(results, "scenarios", "cold_start", "heaviest_imports_messages") or [])}.

## How it is measured
- Load generator: aiohttp in a process of its own; per request total latency, time to first body byte,
  arrival time of each SSE event, status. Keep-alive connections, one per concurrent worker.
- Scenario 1: tiny non-streaming reply, concurrency 1 and 32, {_get(results, "scenarios", "nonstream_c1", "gateway", "requests")} requests
  each after a 200-request warm-up; CPU-ms per request from the gateway process tree's own CPU time (psutil).
- Scenario 2: 100 events 10 ms apart, 64 streams at a time; "held at once" is the most streams that had their first
  byte and not yet their last at one instant. A stream queued behind busy threads has no first byte yet.
- Scenario 3: spawn to first 200 on `/v1/messages` (fresh processes), import time of each function's `main.py`
  in a fresh interpreter, resident memory of the process tree (gunicorn master + worker).
- Real traffic (the headline): the `/v1/messages` request the pinned Claude Code CLI sends (`claude -p` in gateway
  mode, pointed at a loopback recorder at bench time, `gateway/capture.py`; its text is never committed), replayed
  with its own headers, streamed, at c=1, c=32 and 64 streams, from c / 4 developers (a developer's Claude Code keeps
  several requests in flight; each developer has 4 at a time). The stand-in answers with usage typical of Claude
  Code after the first turn (a few fresh input tokens, the prompt read from the cache, a few hundred tokens written
  to it and a few hundred output tokens) and {_pacing(_get(results, "meta", "real_request", "pacing") or {})}.
  Throughput and CPU-ms per request as in scenario 1; "adds" against the direct run.
- Scenario 4: one user whose cap leaves {_get(results, "scenarios", "spend", "headroom_requests")} requests of headroom sends
  {_get(results, "scenarios", "spend", "concurrency")} requests at once ({_spend_shape_line(_get(results, "scenarios", "spend") or {})}); the ledger's token totals are
  compared with the stand-in's own count and its cost with the stand-in's usage priced at list by `common.spend.pricing`.
"""


def attribution_md(figures: dict[str, Any] | None) -> str:
    """`bench --attribute`'s table (thread CPU per function of the path), or nothing."""
    if not figures or not figures.get("rows"):
        return ""
    lines = [
        f"Where a real request's CPU goes (`bench --attribute`: a separate gateway with `bench.probe`, the real"
        f" request at c=32, {figures.get('requests')} requests; {_f(figures.get('process_cpu_ms_per_request'))}"
        f" CPU-ms per request in the worker with the probe's own cost; nested rows are inclusive):",
        "",
        "| function (phase: what) | calls per request | CPU-ms per request | µs per call |",
        "|---|---:|---:|---:|",
    ]
    for row in figures["rows"]:
        lines.append(
            f"| {row['label']} | {_f(row['calls_per_request'])} | {_f(row['ms_per_request'], 3)} | {_f(row['us_per_call'], 1)} |"
        )
    return "\n".join(lines) + "\n\n"


def _pacing(pacing: dict[str, Any]) -> str:
    return f"{pacing.get('deltas')} text deltas {_f(pacing.get('gap_ms'), 0)} ms apart" if pacing else "paced deltas"


def _pinned(meta: dict[str, Any]) -> str:
    vcpus = meta.get("vcpus_pinned")
    return f", pinned to {vcpus} core(s)" if vcpus else ""


def _spend_shape_line(spend: dict[str, Any]) -> str:
    if spend.get("shape") != "real":
        return "a non-streaming priced request"
    return (
        f"the real CLI's request, streamed, {_micros(spend.get('per_request_micros'))} a request at list,"
        f" a cap of {spend.get('cap_cents')} cents = {_f(spend.get('headroom_requests_exact'))} requests"
    )


# --- profiling (py-spy) -------------------------------------------------------------------------------


def start_profile(child: procs.Child, out_dir: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """py-spy record the gunicorn worker (raw collapsed stacks) until stop_profile."""
    worker = child.worker_pids()[-1]
    out = out_dir / f"profile-{name}.txt"
    process = subprocess.Popen(
        [
            _py_spy(),
            "record",
            "--pid",
            str(worker),
            "--format",
            "raw",
            "--output",
            str(out),
            "--rate",
            "400",
            # Only the thread holding the GIL. py-spy reads the GIL's last holder, so a thread
            # blocked in recv() after releasing it can still be counted: shares, not CPU-ms.
            "--gil",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return process, out


def _py_spy() -> str:
    """The venv's py-spy (requirements-dev.txt) when the bench runs without the venv on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


def stop_profile(handle: tuple[subprocess.Popen[bytes], Path]) -> dict[str, Any]:
    import signal

    process, out = handle
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    if not out.exists():
        return {"error": "py-spy wrote no profile (is py-spy installed, and may it ptrace?)"}
    return summarize_profile(out.read_text(), top=25) | {"file": str(out)}


def summarize_profile(collapsed: str, top: int = 25) -> dict[str, Any]:
    """Inclusive share of samples per function from py-spy's collapsed stacks (`a;b;c N`)."""
    inclusive: dict[str, int] = defaultdict(int)
    own: dict[str, int] = defaultdict(int)
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # "fn (file.py:123)" -> "fn (file.py)": a function's lines count as one frame
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if total == 0:
        return {"samples": 0}

    def share(table: dict[str, int]) -> list[dict[str, Any]]:
        ranked = sorted(table.items(), key=lambda kv: kv[1], reverse=True)[:top]
        return [{"frame": frame, "percent": round(100 * n / total, 1)} for frame, n in ranked]

    return {"samples": total, "inclusive": share(inclusive), "self": share(own)}
