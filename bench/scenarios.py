"""The four scenarios, each run against every target in the same run.

A target is where the load generator sends `POST /v1/messages`: `direct` (the
model stand-in itself), `gateway` (ours, under gunicorn) and, when present,
`peer` (Anthropic's own gateway). Raw figures come from the load generator
process; this module turns them into the statistics of `bench.stats`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import procs, stats

MODEL = "claude-sonnet-4-5"


@dataclass
class Target:
    name: str
    base_url: str
    tokens: list[str]
    auth: str = "bearer"
    child: procs.Child | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/v1/messages"


def body(*, stream: bool, standin: dict[str, Any], max_tokens: int = 16, prompt_bytes: int = 0) -> dict[str, Any]:
    """A Messages request (tiny unless `prompt_bytes`); `standin` says how the stand-in answers."""
    prompt = "Say hi." if prompt_bytes <= 0 else ("lorem " * (prompt_bytes // 6 + 1))[:prompt_bytes]
    out: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
        **standin,
    }
    if stream:
        out["stream"] = True
    return out


def load(
    target: Target,
    *,
    requests: int,
    concurrency: int,
    payload: dict[str, Any],
    tokens: list[str] | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> dict[str, Any]:
    """One load-generator run against `target`, with the target's CPU time over it.
    `headers` are sent besides the target's own; `query` is appended to the URL (`beta=true`)."""
    spec = {
        "url": target.messages_url + (f"?{query}" if query else ""),
        "requests": requests,
        "concurrency": concurrency,
        "body": payload,
        "tokens": tokens if tokens is not None else target.tokens,
        "auth": target.auth,
        "headers": {**(headers or {}), **target.headers},
        "timeout_s": 120.0,
    }
    cpu_before = target.child.cpu_seconds() if target.child else None
    done = subprocess.run(
        procs.python_argv("-m", "bench.loadgen"),
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=procs.base_env(),
        cwd=procs.ROOT,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed against {target.name}:\n{done.stderr[-3000:]}")
    raw: dict[str, Any] = json.loads(done.stdout)
    if target.child is not None and cpu_before is not None:
        raw["cpu_s"] = target.child.cpu_seconds() - cpu_before
    return raw


# --- scenario 1: non-streaming, tiny reply ------------------------------------------


def nonstream_figures(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "requests": raw["count"],
        "ok": raw["ok"],
        "statuses": raw["statuses"],
        "errors": raw["errors"],
        "latency_ms": stats.summary(raw["total_ms"]),
        "rps": stats.ratio(raw["ok"], raw["wall_s"]),
        "wall_s": raw["wall_s"],
    }
    if "cpu_s" in raw:
        out["cpu_ms_per_request"] = stats.ratio(raw["cpu_s"] * 1000, raw["count"])
    return out


def with_added(results: dict[str, dict[str, Any]], key: str, pairs: list[str]) -> dict[str, Any]:
    """Each non-direct target's `key` summary minus direct's, under `added`."""
    added: dict[str, Any] = {}
    direct = results.get("direct")
    for name, figures in results.items():
        if name == "direct" or direct is None:
            continue
        added[name] = stats.difference(figures[key], direct[key], pairs)
    return added


# --- scenario 2: streaming ---------------------------------------------------------------


def stream_figures(raw: dict[str, Any], expected_events: int | None) -> dict[str, Any]:
    events = raw["events"]
    delivered = (
        raw["ok"] == raw["count"]
        and raw["complete"] == raw["count"]
        and (expected_events is None or all(e == expected_events for e in events))
    )
    out: dict[str, Any] = {
        "streams": raw["count"],
        "ok": raw["ok"],
        "statuses": raw["statuses"],
        "errors": raw["errors"],
        "complete": raw["complete"],
        "events_expected": expected_events,
        "events_min": min(events) if events else 0,
        "events_max": max(events) if events else 0,
        "all_events_delivered": delivered,
        "ttfb_ms": stats.summary(raw["ttfb_ms"]),
        "gap_ms": stats.summary(raw["gaps_ms"]),
        "total_ms": stats.summary(raw["total_ms"]),
        "held_max": stats.max_overlap([tuple(h) for h in raw["held"]]),
        "wall_s": raw["wall_s"],
    }
    if "cpu_s" in raw:
        out["cpu_ms_per_request"] = stats.ratio(raw["cpu_s"] * 1000, raw["count"])
    return out


def expected_event_count(raw: dict[str, Any]) -> int | None:
    """What the upstream itself sends per stream: the commonest count seen direct."""
    events = raw.get("events") or []
    return statistics.mode(events) if events else None


# --- scenario 3: cold start --------------------------------------------------------------


def first_200(
    child: procs.Child, url: str, payload: dict[str, Any], headers: dict[str, str], timeout: float = 60.0
) -> float:
    """Seconds from the spawn of `child` to its first 200 on POST `url`."""
    data = json.dumps(payload).encode()
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited during start-up:\n{child.log_tail()}")
        request = urllib.request.Request(  # noqa: S310 (loopback URLs built here)
            url, data=data, headers={"content-type": "application/json", **headers}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
                response.read()
                if response.status == 200:
                    return time.perf_counter() - child.started
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:300]!r}"
            if exc.code != 503:  # only "not ready yet" is worth waiting for
                raise RuntimeError(f"{child.name} answered {last}") from None
        except OSError as exc:
            last = str(exc)
        time.sleep(0.005)
    raise RuntimeError(f"{child.name}: no 200 on {url} within {timeout:.0f} s ({last}):\n{child.log_tail()}")


IMPORT_PROBE = """
import sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {src!r})
started = time.perf_counter()
import main
print((time.perf_counter() - started) * 1000)
"""


def import_ms(function: str, runs: int = 3) -> dict[str, Any]:
    """Import time of `functions/<function>/main.py` in fresh interpreters (ms; median of runs)."""
    src = procs.ROOT / "functions" / function
    code = IMPORT_PROBE.format(root=str(procs.ROOT), src=str(src))
    times: list[float] = []
    for _ in range(runs):
        done = subprocess.run(
            procs.python_argv("-c", code), capture_output=True, text=True, cwd=src, env=procs.base_env(), check=False
        )
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return {"median_ms": statistics.median(times), "runs_ms": times}


def heaviest_imports(function: str, top: int = 8) -> list[dict[str, Any]]:
    """The modules whose import (cumulative, first level under main) costs most, from -X importtime."""
    src = procs.ROOT / "functions" / function
    code = f"import sys; sys.path.insert(0, {str(procs.ROOT)!r}); sys.path.insert(0, {str(src)!r}); import main"
    done = subprocess.run(
        procs.python_argv("-X", "importtime", "-c", code),
        capture_output=True,
        text=True,
        cwd=src,
        env=procs.base_env(),
        check=False,
    )
    return parse_importtime(done.stderr, top)


def parse_importtime(text: str, top: int = 8) -> list[dict[str, Any]]:
    """Packages by the import time they cost themselves (self time of all their modules
    summed), from `python -X importtime` output: which dependency a cold start pays for."""
    totals: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        root = parts[2].strip().split(".")[0]
        totals[root] = totals.get(root, 0) + int(parts[0].strip())
    ordered = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)
    return [{"package": m, "self_ms": round(us / 1000, 1)} for m, us in ordered][:top]


def mb(value: int) -> float:
    return round(value / 1e6, 1)


Progress = Callable[[str], None]
