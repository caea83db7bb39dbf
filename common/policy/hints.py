"""Which managed-settings checksums this gateway served recently (the `managed_served` table, migration 011).

Claude Code sends `x-claude-code-managed-settings-checksum` on each model
request once a policy pushes `CLAUDE_CODE_GATEWAY_HINT_HEADERS`. PROTOCOL.md
(and `claude gateway`'s /protocol) say to accept more than one value: after an
edit a session keeps sending the previous value until it polls again (an hour,
longer after an expired sign-in), so a value is accepted for ACCEPT_HOURS after
it was last served, on any instance. The header is sensitive (an unkeyed
SHA-256 that also covers machine-local `env` entries): it is compared in memory
and never logged or stored; only the verdict is (`spend_usage.settings_check`).

This module owns the table's SQL. `record()` is called by `/managed/settings`
(at most one write per checksum per instance every RECORD_SECONDS);
`recently_served()` is read by the messages path, from a per-instance copy
re-read every REFRESH_SECONDS (no round trip per request).
"""

from __future__ import annotations

import threading
import time

from common.core import logs
from common.db import pool

HEADER = "x-claude-code-managed-settings-checksum"
HINT_ENV = "CLAUDE_CODE_GATEWAY_HINT_HEADERS"
ACCEPT_HOURS = 24
RECORD_SECONDS = 300.0
REFRESH_SECONDS = 60.0
MAX_HEADER_CHARS = 128

_lock = threading.Lock()
_recorded: dict[str, float] = {}  # checksum -> monotonic time this instance last wrote it
_recent: tuple[float, frozenset[str]] | None = None  # (monotonic time read, checksums)


def record(checksum: str, policy: str) -> None:
    """Note that `checksum` was served now (throttled per instance; never raises)."""
    now = time.monotonic()
    with _lock:
        last = _recorded.get(checksum)
        if last is not None and now - last < RECORD_SECONDS:
            return
        _recorded[checksum] = now
    try:
        pool.get().execute(
            "INSERT INTO managed_served (checksum, policy) VALUES (%s, %s)"
            " ON CONFLICT (checksum) DO UPDATE SET last_served_at = now(), policy = EXCLUDED.policy",
            (checksum, policy[:200]),
        )
    except Exception as exc:  # the fleet view is advisory: serving the settings goes on
        with _lock:
            _recorded.pop(checksum, None)
        logs.warning("cannot record a served managed-settings checksum", error=type(exc).__name__)


def recently_served() -> frozenset[str]:
    """Checksums served in the last ACCEPT_HOURS by any instance (this instance's copy, at most REFRESH_SECONDS old)."""
    global _recent
    now = time.monotonic()
    cached = _recent
    if cached is not None and now - cached[0] < REFRESH_SECONDS:
        return cached[1]
    try:
        rows = pool.get().execute(
            "SELECT checksum FROM managed_served WHERE last_served_at > now() - make_interval(hours => %s)",
            (ACCEPT_HOURS,),
        )
    except Exception as exc:
        logs.warning("cannot read the served managed-settings checksums", error=type(exc).__name__)
        found = cached[1] if cached is not None else frozenset()
        _recent = (now - REFRESH_SECONDS + 5.0, found)  # retry in a few seconds
        return found
    found = frozenset(str(r[0]) for r in rows)
    _recent = (now, found)
    return found


def forget() -> None:
    """Drop this instance's copies (tests; a new config)."""
    global _recent
    with _lock:
        _recorded.clear()
        _recent = None


def normalise(header: str | None) -> str | None:
    """The header's value as a checksum (quotes and spaces dropped), None when absent or empty."""
    if header is None:
        return None
    value = header.strip().strip('"').strip()
    return value or None


def client_of(user_agent: str | None) -> str | None:
    """The User-Agent's first product token (`claude-cli/2.1.333 (external, cli)` -> `claude-cli/2.1.333`)."""
    if not user_agent:
        return None
    token = user_agent.strip().split(" ", 1)[0]
    return token[:64] or None
