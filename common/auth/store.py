"""Server-side sessions: one row per sign-in (a "session family"), and their revocation.

Every access token (JWT claim `sid`) and refresh token of a sign-in belongs to
one family; revoking the family ends all of them. Bearer endpoints ask
`is_revoked()` through `sessions.set_revocation_check`, which answers from a
per-instance set of revoked session ids reloaded at most every
`session.revocation_cache_seconds` (default 5): a request costs no database
round trip, one request per interval pays one query. **Staleness bound**: a
session revoked on another instance is refused by this one within
`revocation_cache_seconds` (+ the query's own latency); on the instance that
revoked it, at once. If the reload fails the last known set is kept and the
reload is retried at the next interval. Refresh always reads the database, so
a revoked family can never refresh.

The admin API calls `list_sessions()` and `revoke()`.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from common import config
from common.audit import records as audit
from common.auth import sessions
from common.config import Config
from common.core import logs
from common.core.identity import Identity
from common.db import pool as store


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


_COLUMNS = (
    "id, sub, email, groups, created_at, last_refresh_at, expires_at, revoked_at, revoked_by,"
    " revoke_reason, client_ip, user_agent"
)


def list_sessions(
    email: str | None = None,
    active_only: bool = True,
    limit: int = 100,
    after: str | None = None,
    db: store.Database | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Sessions newest first, and whether more follow. `after` is the id of the last one of the previous page."""
    where = ["TRUE"]
    args: list[Any] = []
    if email:
        where.append("lower(email) = lower(%s)")
        args.append(email)
    if active_only:
        where.append("revoked_at IS NULL AND expires_at > now()")
    if after:
        where.append("(created_at, id) < (SELECT created_at, id FROM auth_sessions WHERE id = %s)")
        args.append(after)
    limit = max(1, min(int(limit), 1000))
    # Only constant fragments are joined; every value is a parameter.
    condition = " AND ".join(where)
    sql = f"SELECT {_COLUMNS} FROM auth_sessions WHERE {condition} ORDER BY created_at DESC, id DESC LIMIT %s"  # noqa: S608
    rows = (db or store.get()).execute(sql, (*args, limit + 1))
    out = [
        {
            "id": r[0],
            "type": "session",
            "sub": r[1],
            "email": r[2],
            "groups": list(r[3] or []),
            "created_at": _iso(r[4]),
            "last_refreshed_at": _iso(r[5]),
            "expires_at": _iso(r[6]),
            "revoked_at": _iso(r[7]),
            "revoked_by": r[8],
            "revoke_reason": r[9],
            "client_ip": r[10],
            "user_agent": r[11],
        }
        for r in rows[:limit]
    ]
    return out, len(rows) > limit


def revoke(
    email: str | None = None,
    session_id: str | None = None,
    actor: str = "system",
    reason: str = "revoked",
    client_ip: str | None = None,
    user_agent: str | None = None,
    db: store.Database | None = None,
) -> int:
    """Revoke the active sessions of `email`, or the one `session_id`; returns how many."""
    if not email and not session_id:
        raise ValueError("revoke() needs an email or a session id")
    where, args = [], []
    if session_id:
        where.append("id = %s")
        args.append(session_id)
    if email:
        where.append("lower(email) = lower(%s)")
        args.append(email)
    condition = " AND ".join(where)  # constant fragments; values are parameters
    sql = f"UPDATE auth_sessions SET revoked_at = now(), revoked_by = %s, revoke_reason = %s WHERE {condition} AND revoked_at IS NULL RETURNING id, email"  # noqa: S608
    rows = (db or store.get()).execute(sql, (actor, reason, *args))
    for sid, _ in rows:
        _cache.add(sid)
    if rows:
        audit.record(
            "session.revoked",
            actor=actor,
            target=email or rows[0][1],
            client_ip=client_ip,
            user_agent=user_agent,
            detail={"session_ids": [r[0] for r in rows], "reason": reason},
            db=db,
        )
    return len(rows)


class _RevokedCache:
    """Ids of sessions revoked while their access tokens may still be valid."""

    def __init__(self) -> None:
        self._ids: frozenset[str] = frozenset()
        self._local: set[str] = set()
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def add(self, session_id: str) -> None:
        with self._lock:
            self._local.add(session_id)

    def reset(self) -> None:
        with self._lock:
            self._ids, self._local, self._loaded_at = frozenset(), set(), float("-inf")

    def contains(self, session_id: str, cfg: Config) -> bool:
        if session_id in self._local:
            return True
        if time.monotonic() - self._loaded_at >= cfg.session.revocation_cache_seconds:
            self._reload(cfg)
        return session_id in self._ids

    def _reload(self, cfg: Config) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another thread is reloading: answer from the current set
        try:
            if time.monotonic() - self._loaded_at < cfg.session.revocation_cache_seconds:
                return
            # An access token lives at most ttl_hours: older revocations cannot matter.
            horizon = int(cfg.session.ttl_hours * 3600) + sessions.LEEWAY_SECONDS + 60
            rows = store.get().execute(
                "SELECT id FROM auth_sessions WHERE revoked_at > now() - make_interval(secs => %s)", (horizon,)
            )
            self._ids = frozenset(r[0] for r in rows)
            self._local.intersection_update(self._ids)
        except Exception as exc:
            logs.warning("revocation list not reloaded; keeping the last one", error=type(exc).__name__)
        finally:
            self._loaded_at = time.monotonic()
            self._lock.release()


_cache = _RevokedCache()


def is_revoked(identity: Identity) -> bool:
    """The check `sessions.authenticate` runs on every bearer request."""
    if not identity.session_id:
        return False
    return _cache.contains(identity.session_id, config.current())


def install() -> None:
    """Make every bearer endpoint of this process refuse revoked sessions."""
    sessions.set_revocation_check(is_revoked)


def reset_cache() -> None:
    _cache.reset()
