"""Which managed-settings checksums this gateway served recently (the `managed_served` table, migration 011).

Claude Code sends `x-claude-code-managed-settings-checksum` on each model
request once a policy pushes `CLAUDE_CODE_GATEWAY_HINT_HEADERS`. PROTOCOL.md
(and `claude gateway`'s /protocol) say to accept more than one value: after an
edit, keep accepting the previous value "until every session has polled
again", and a session whose sign-in expired sends the value from before the
expiry on its first requests after a /login. So a served value is accepted
(`recently_served`) while either holds:
- it was served, by any instance, in the last ACCEPT_HOURS;
- no newer value of its policy has been served for ACCEPT_HOURS yet: the fleet
  has not had ACCEPT_HOURS of the replacement, so machines that were off (a
  weekend) or signed out since still legitimately send it. A value stops
  counting MAX_STALE_DAYS after it was last served, whatever happened since.
The header is sensitive (an unkeyed
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
ACCEPT_HOURS = 24  # a value stays valid this long after it was last served, or after its replacement appeared
MAX_STALE_DAYS = 7  # and never longer than this after it was last served
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
    """Checksums still valid (the module's rule: served in the last ACCEPT_HOURS, or replaced less than ACCEPT_HOURS
    ago), from any instance's serving (this instance's copy, at most REFRESH_SECONDS old)."""
    global _recent
    now = time.monotonic()
    cached = _recent
    if cached is not None and now - cached[0] < REFRESH_SECONDS:
        return cached[1]
    try:
        rows = pool.get().execute(
            "SELECT m.checksum FROM managed_served m WHERE m.last_served_at > now() - make_interval(hours => %s)"
            " OR (m.last_served_at > now() - make_interval(days => %s) AND NOT EXISTS (SELECT 1 FROM managed_served n"
            "  WHERE n.policy = m.policy AND n.checksum <> m.checksum AND n.first_served_at > m.last_served_at"
            "  AND n.first_served_at <= now() - make_interval(hours => %s)))",
            (ACCEPT_HOURS, MAX_STALE_DAYS, ACCEPT_HOURS),
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
