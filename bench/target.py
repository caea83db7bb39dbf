"""The gateway under test, started as it runs in production.

The `messages` function is served by functions-framework's own command
(`python -m functions_framework --target messages --source
functions/messages/main.py`), i.e. gunicorn with the gthread worker and
`THREADS` threads, in a process of its own, with:
- the real embedded PostgreSQL (gateway/devdb.py), migrations applied;
- spend limits enabled (`admin:`, `enforcement:`, `pricing:`) and a cap set for
  every simulated user through the admin API;
- telemetry enabled: `telemetry.collector` points at the collector stand-in;
- one session token per simulated user (`common.auth.sessions.issue`).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from bench import procs

JWT_SECRET = "bench-jwt-secret-0123456789-abcdefghijklmnopq"  # noqa: S105 (a throwaway loopback key)
ADMIN_KEY = "bench-admin-write-key-0123456789abcdef01"
MODEL = "claude-sonnet-4-5"
# The model the real CLI (2.1.333) sends by default in gateway mode, listed and priced
# explicitly so the real-traffic scenario routes and prices it whether or not the
# gateway's own model catalogue knows it yet. List price of its tier in the catalogue
# that CLI ships (tier_5_25, USD per million tokens): equal to the catalogue's, so the
# override changes nothing once the catalogue has it.
REAL_MODEL = "claude-opus-4-7"
LIST_PRICES: dict[str, dict[str, float]] = {
    REAL_MODEL: {"input": 5, "output": 25, "cache_write": 6.25, "cache_write_1h": 10, "cache_read": 0.5},
}
DEFAULT_THREADS = 80  # Cloud Run concurrency 80 for `messages` -> THREADS 80 (see production_threads)
DEFAULT_CPU = 1.0


def sizing(cpu: float, concurrency: int) -> tuple[int, int]:
    """(WORKERS, THREADS) for an instance of `cpu` vCPUs, as terraform/functions.tf sets them:
    one worker per whole vCPU, the concurrency split between them."""
    workers = max(1, math.floor(cpu))
    return workers, math.ceil(concurrency / workers)


def production_cpu(root: Path = procs.ROOT) -> float:
    """The vCPUs of `messages` in terraform/ (`messages = { cpu = "N" ... }`), else 1."""
    tf_dir = root / "terraform"
    for path in sorted(tf_dir.rglob("*.tf")) if tf_dir.is_dir() else []:
        match = re.search(r"\bmessages\s*=\s*\{[^}]*\bcpu\s*=\s*\"?([0-9.]+)", path.read_text(errors="replace"))
        if match:
            return float(match.group(1))
    return DEFAULT_CPU


def production_threads(root: Path = procs.ROOT) -> tuple[int, str]:
    """The concurrency the deployment gives `messages` (WORKERS x THREADS), and where that figure came from.

    Read from terraform/ (the deploy engineer's source of truth) when present:
    THREADS is set to the function's concurrency there, so the figure is the
    `messages = { ... concurrency = N ... }` sizing entry, or a literal
    `THREADS = "N"` / `max_instance_request_concurrency = N`. Otherwise 80.
    """
    tf_dir = root / "terraform"
    found: list[tuple[int, str]] = []
    if tf_dir.is_dir():
        for path in sorted(tf_dir.rglob("*.tf")):
            text = path.read_text(errors="replace")
            for pattern in (
                r"\bmessages\s*=\s*\{[^}]*\bconcurrency\s*=\s*(\d+)",
                r"\bTHREADS\b\s*=\s*\"?(\d+)",
                r"max_instance_request_concurrency\s*=\s*(\d+)",
            ):
                match = re.search(pattern, text)
                if match:
                    found.append((int(match.group(1)), str(path.relative_to(root))))
                    break
    if found:
        return found[0]
    return DEFAULT_THREADS, "default of bench/target.py (no terraform/ figure found)"


def users(count: int) -> list[dict[str, Any]]:
    """The simulated users: distinct subjects, all in one ordinary group."""
    return [
        {"sub": f"bench-user-{i:04d}", "email": f"user{i:04d}@bench.example", "groups": ["bench"]} for i in range(count)
    ]


def config(
    *,
    port: int,
    database_url: str,
    upstream_url: str,
    collector_url: str,
    upstream_kind: str = "anthropic",
    extra_models: tuple[str, ...] = (REAL_MODEL,),
) -> dict[str, Any]:
    """gateway.yaml for the bench: `MODEL` plus `extra_models` (the captured request's
    model), each routed to the stand-in; those in LIST_PRICES priced explicitly."""
    extra = [m for m in dict.fromkeys(extra_models) if m != MODEL]
    if upstream_kind == "vertex":
        upstream: dict[str, Any] = {
            "name": "vertex",
            "provider": "vertex",
            "project_id": "bench-project",
            "region": "us-east5",
            "base_url": f"{upstream_url}/v1",
            "auth": {"anonymous": "true"},
            "models": ["claude-*"],
        }
        models: list[dict[str, Any]] = [{"id": MODEL, "upstream_model": {"vertex": "claude-sonnet-4-5@20250929"}}]
        models += [{"id": m, "upstream_model": {"vertex": m}} for m in extra]
    else:
        upstream = {
            "name": "anthropic",
            "provider": "anthropic",
            "base_url": upstream_url,
            "auth": {"api_key": "sk-bench-standin"},
            "models": ["claude-*"],
        }
        models = [{"id": MODEL}] + [{"id": m} for m in extra]
    return {
        "local": {"enabled": True},
        "listen": {"public_url": f"http://127.0.0.1:{port}"},
        "oidc": {"issuer": "http://127.0.0.1:9", "client_id": "bench", "client_secret": "bench-client-secret"},
        "session": {"jwt_secret": JWT_SECRET, "ttl_hours": 2},
        "store": {"postgres_url": database_url, "max_connections": 10, "connect_timeout_seconds": 5},
        "upstreams": [upstream],
        "models": models,
        "managed": {"policies": [{"name": "everyone", "settings": {"availableModels": ["opus", "sonnet", "haiku"]}}]},
        "admin": {"write_keys": [{"id": "bench", "key": ADMIN_KEY}]},
        "enforcement": {"fail_closed_on_error": False},
        "pricing": {
            "multiplier": 1.0,
            "overrides": [{"model": m, **LIST_PRICES[m]} for m in extra if m in LIST_PRICES],
        },
        "telemetry": {"collector": {"endpoint": collector_url}},
    }


def write_config(directory: Path, **kwargs: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config(**kwargs), sort_keys=False))
    return path


def env(
    config_path: Path,
    threads: int,
    switch_interval_s: float | None = None,
    workers: int = 1,
    probe_ctl: Path | None = None,
) -> dict[str, str]:
    out = procs.base_env(
        GATEWAY_CONFIG=str(config_path),
        THREADS=str(threads),
        WORKERS=str(workers),
        GUNICORN_LOG_LEVEL="error",
    )
    if probe_ctl is not None:  # `bench.probe` in this gateway (a separate one: its wrappers cost CPU)
        out["PYTHONPATH"] = f"{procs.ROOT / 'bench' / 'probe_site'}{os.pathsep}{out['PYTHONPATH']}"
        out["BENCH_PROBE_CTL"] = str(probe_ctl)
    if switch_interval_s is not None:
        # an experiment, not production: a sitecustomize that shortens the GIL switch interval
        site = config_path.parent / "switch-interval"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(f"import sys\nsys.setswitchinterval({switch_interval_s!r})\n")
        out["PYTHONPATH"] = f"{site}{os.pathsep}{out['PYTHONPATH']}"
    return out


def start(
    config_path: Path,
    port: int,
    threads: int,
    log_dir: Path,
    name: str = "gateway",
    switch_interval_s: float | None = None,
    workers: int = 1,
    cpus: int | None = None,
    probe_ctl: Path | None = None,
) -> procs.Child:
    """`messages` under functions-framework's gunicorn, exactly as the platform starts it.

    `cpus` pins the process tree to that many cores (taskset execs in place: same pid),
    an instance of that many vCPUs on this machine."""
    pin = ["taskset", "-c", f"0-{cpus - 1}"] if cpus else []
    argv = pin + procs.python_argv(
        "-m",
        "functions_framework",
        "--target",
        "messages",
        "--source",
        str(procs.ROOT / "functions" / "messages" / "main.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    return procs.spawn(name, argv, env(config_path, threads, switch_interval_s, workers, probe_ctl), log_dir)
