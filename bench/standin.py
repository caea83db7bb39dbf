"""Driving THE model-upstream stand-in (gateway/standins/upstream.py) from the benchmark.

The benchmark does not have a stand-in of its own: it starts the project's
(`python -m gateway.standins.upstream --port N`) in a process of its own and
reads its usage totals from `/_standin/stats`.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from bench import procs

API_KEY = "sk-bench-standin"


def start(port: int, log_dir: Any) -> procs.Child:
    # not recording requests: the benchmark reads totals only, and keeping bodies costs the stand-in time
    argv = procs.python_argv("-m", "gateway.standins.upstream", "--port", str(port), "--record", "false")
    child = procs.spawn("standin", argv, procs.base_env(), log_dir)
    procs.wait_http(child, f"http://127.0.0.1:{port}/_standin/stats")
    return child


def stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/_standin/stats", timeout=5) as response:  # noqa: S310 (loopback)
        return dict(json.load(response))


def knobs(
    *,
    deltas: int,
    gap_ms: float = 0,
    ttft_ms: float = 0,
    input_tokens: int,
    output_tokens: int,
    cache_read_input_tokens: int = 0,
    cache_creation_5m_input_tokens: int = 0,
    cache_creation_1h_input_tokens: int = 0,
) -> dict[str, Any]:
    """Body fields asking the stand-in for one behaviour: its `_standin` object, which a
    gateway passes upstream like any unknown field (so the direct and proxied runs match).
    Cache token counts appear only when set, so the tiny scenarios' bodies stay as they were."""
    cache = {
        "cache_read_input_tokens": cache_read_input_tokens,
        "cache_creation_5m_input_tokens": cache_creation_5m_input_tokens,
        "cache_creation_1h_input_tokens": cache_creation_1h_input_tokens,
    }
    return {
        "_standin": {
            "deltas": deltas,
            "gap_ms": gap_ms,
            "ttft_ms": ttft_ms,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }
        | {k: v for k, v in cache.items() if v}
    }
