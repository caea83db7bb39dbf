"""Ending sign-ins: `revoke()` a session family, and the check every bearer request makes.

Every access token (JWT claim `sid`) and refresh token of a sign-in belongs to
one family; revoking the family ends all of them. Bearer endpoints ask
`is_revoked()` through `sessions.set_revocation_check` (`install()`), which
answers from a per-instance set of revoked session ids reloaded at most every
`session.revocation_cache_seconds` (default 5): a request costs no database
round trip, one request per interval pays one query. **Staleness bound**: a
session revoked on another instance is refused by this one within
`revocation_cache_seconds` (+ the query's own latency); on the instance that
revoked it, at once. If the reload fails the last known set is kept and the
reload is retried at the next interval. Refresh always reads the database, so
a revoked family can never refresh.
"""

from __future__ import annotations

import threading
import time

from common import config
from common.audit import records as audit
from common.auth import sessions, store
from common.config import Config
from common.core import logs
from common.core.identity import Identity
from common.db import pool


def revoke(
    email: str | None = None,
    session_id: str | None = None,
    actor: str = "system",
    reason: str = "revoked",
    client_ip: str | None = None,
    user_agent: str | None = None,
    db: pool.Database | None = None,
) -> int:
    """Revoke the active sessions of `email`, or the one `session_id`, and audit it; returns how many."""
    revoked = store.revoke_sessions(actor, reason, email=email, session_id=session_id, db=db)
    for sid, _ in revoked:
        _cache.add(sid)
    if revoked:
        audit.record(
            "session.revoked",
            actor=actor,
            target=email or revoked[0][1],
            client_ip=client_ip,
            user_agent=user_agent,
            detail={"session_ids": [sid for sid, _ in revoked], "reason": reason},
            db=db,
        )
    return len(revoked)


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
            self._ids = store.revoked_since(horizon)
            self._local.intersection_update(self._ids)
        except Exception as exc:
            logs.warning("revocation list not reloaded; keeping the last one", error=type(exc).__name__)
        finally:
            self._loaded_at = time.monotonic()
            self._lock.release()


# Per instance, for the process's life: database state (not config), reloaded by
# age; the interval is read from the config of each call, so a reload applies at once.
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
    """Forget what this instance knows of revocations (tests)."""
    _cache.reset()
