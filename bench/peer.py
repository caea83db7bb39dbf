"""The peer: Anthropic's own gateway (`claude gateway`), run as a third column.

It ships inside the Claude Code native binary. `--fetch-peer` fetches it with
`npm pack @anthropic-ai/claude-code-linux-x64` into `.cache/claude-code/`
(ignored, never committed). It is configured as the issue prescribes: an
`anthropic` upstream whose `base_url` is the model stand-in (loopback allowed by
CLAUDE_GATEWAY_ALLOW_LOOPBACK=1), its own database on the embedded Postgres,
`oidc.issuer` at a loopback URL serving only the discovery document, and
`admin:` present so its spend meter runs. Its session tokens are HS256 JWTs
signed with `session.jwt_secret`, header `kid` = first 8 bytes of
SHA-256(secret) in hex, claims sub, email, groups, aud, iat, exp.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import jwt
import yaml

from bench import procs
from gateway import claude_cli

CACHE = claude_cli.CACHE
JWT_SECRET = "bench-peer-jwt-secret-0123456789-abcdefghijkl"  # noqa: S105 (a throwaway loopback key)
ADMIN_KEY = "bench-peer-admin-write-key-0123456789abcdef"
AUDIENCE = "claude-gateway"


def find_binary() -> Path | None:
    """The pinned `claude` under .cache/claude-code/ if fetched, else the newest one there."""
    pinned = CACHE / claude_cli.VERSION / "claude"
    if pinned.is_file():
        return pinned
    found = [c for c in CACHE.glob("*/claude") if c.is_file()]
    return max(found, key=lambda c: tuple(int(p) for p in c.parent.name.split(".") if p.isdigit()), default=None)


def fetch() -> Path:
    """The pinned CLI, fetched with `npm pack` into .cache/claude-code/<version>/ (gateway.claude_cli)."""
    return claude_cli.ensure(claude_cli.VERSION, CACHE)


def version(binary: Path) -> str:
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, env=_env())
        return done.stdout.strip() or done.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"


def key_id(secret: str) -> str:
    return hashlib.sha256(secret.encode()).digest()[:8].hex()


def token(sub: str, email: str, groups: list[str], ttl: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": sub, "email": email, "groups": groups, "aud": AUDIENCE, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256", headers={"kid": key_id(JWT_SECRET)})


def config(port: int, database_url: str, issuer: str, upstream_url: str) -> dict[str, object]:
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "oidc": {"issuer": issuer, "client_id": "bench-peer", "client_secret": "bench-peer-client-secret"},
        "session": {"jwt_secret": JWT_SECRET},
        "store": {"postgres_url": database_url},
        "upstreams": [
            {
                "name": "anthropic",
                "provider": "anthropic",
                "base_url": upstream_url,
                "auth": {"api_key": "sk-bench-standin"},
            }
        ],
        "admin": {"write_keys": [{"id": "bench", "key": ADMIN_KEY}]},
    }


def write_config(directory: Path, **kwargs: str | int) -> Path:
    path = directory / "peer-gw.yaml"
    path.write_text(yaml.safe_dump(config(**kwargs), sort_keys=False))  # type: ignore[arg-type]
    return path


def _env() -> dict[str, str]:
    return procs.base_env(
        HOME=str(procs.ROOT / ".cache" / "claude-code" / "home"),
        DISABLE_AUTOUPDATER="1",
        CLAUDE_GATEWAY_ALLOW_LOOPBACK="1",
    )


def start(binary: Path, config_path: Path, log_dir: Path, cpus: int | None = None) -> procs.Child:
    """`claude gateway`; `cpus` pins it to that many cores as `--vcpus` pins ours (the same instance size)."""
    (procs.ROOT / ".cache" / "claude-code" / "home").mkdir(parents=True, exist_ok=True)
    pin = ["taskset", "-c", f"0-{cpus - 1}"] if cpus else []
    return procs.spawn("peer", [*pin, str(binary), "gateway", "--config", str(config_path)], _env(), log_dir)
