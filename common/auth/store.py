"""The sign-in tables' SQL, all of it: `device_codes`, `auth_sessions`, `refresh_tokens` (`002_auth.sql`).

Storage apart from protocol, as authlib's storage hooks are: the RFC modules
and the page decide what a state means, these functions read and write it.
Each function is one statement (one round trip) unless it says otherwise, so
a device-grant poll, a token claim and a rotation stay atomic under
concurrency. Tokens arrive here already hashed (`crypto.digest`) and IdP
refresh tokens already sealed: nothing readable is stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.db import pages, pool

# --- device codes (RFC 8628) ------------------------------------------------------------


def insert_device_code(
    device_code_hash: str,
    user_code: str,
    ttl_seconds: int,
    interval_seconds: int,
    client_ip: str | None,
    user_agent: str | None,
    db: pool.Database | None = None,
) -> bool:
    """Store a new pending code; False when `user_code` is already taken by another code."""
    rows = (db or pool.get()).execute(
        "INSERT INTO device_codes (device_code_hash, user_code, expires_at, interval_seconds, client_ip, user_agent)"
        " VALUES (%s, %s, now() + make_interval(secs => %s), %s, %s, %s)"
        " ON CONFLICT (user_code) DO NOTHING RETURNING 1",
        (device_code_hash, user_code, ttl_seconds, interval_seconds, client_ip, user_agent),
    )
    return bool(rows)


def prune_device_codes(db: pool.Database | None = None) -> None:
    """Drop codes a day past expiry (cheap: indexed on `expires_at`)."""
    (db or pool.get()).execute("DELETE FROM device_codes WHERE expires_at < now() - interval '1 day'")


def pending_device_code(user_code: str, issued_to: str | None = None, db: pool.Database | None = None) -> bool:
    """Is `user_code` a live code still waiting for the browser (and, with `issued_to`, issued to that address)?"""
    rows = (db or pool.get()).execute(
        "SELECT 1 FROM device_codes WHERE user_code = %s AND status = 'pending' AND expires_at > now()"
        " AND (%s::text IS NULL OR client_ip = %s::text)",
        (user_code, issued_to, issued_to),
    )
    return bool(rows)


def settle_device_code(
    user_code: str,
    status: str,
    identity_json: str | None = None,
    sealed_idp_refresh: str | None = None,
    db: pool.Database | None = None,
) -> bool:
    """Move a live pending code to `status` (approved | denied); False when it was not pending any more."""
    rows = (db or pool.get()).execute(
        "UPDATE device_codes SET status = %s, identity = %s::jsonb, idp_refresh = %s"
        " WHERE user_code = %s AND status = 'pending' AND expires_at > now() RETURNING 1",
        (status, identity_json, sealed_idp_refresh, user_code),
    )
    return bool(rows)


@dataclass(frozen=True, slots=True)
class DevicePoll:
    """A device code as one poll found and left it."""

    before: str  # status before this poll
    after: str  # status after it: 'consumed' when this poll took the approval
    expired: bool
    too_fast: bool  # the previous poll was less than the tolerated interval ago
    identity: Any  # the approved user (jsonb), or None
    sealed_idp_refresh: str | None
    user_code: str


def poll_device_code(device_code_hash: str, tolerance: float, db: pool.Database | None = None) -> DevicePoll | None:
    """One poll, one statement: stamp `last_poll_at`, read the previous stamp, and consume an approved code.

    The code is consumed only when approved, unexpired and polled no faster than
    `tolerance` × its interval, atomically (row lock), so it yields tokens at
    most once even when polled concurrently. None for an unknown code.
    """
    rows = (db or pool.get()).execute(
        "WITH old AS (SELECT device_code_hash, last_poll_at, status FROM device_codes"
        "   WHERE device_code_hash = %s FOR UPDATE)"
        " UPDATE device_codes d SET last_poll_at = now(),"
        "   status = CASE WHEN d.status = 'approved' AND d.expires_at > now()"
        "     AND (old.last_poll_at IS NULL OR old.last_poll_at"
        "          < now() - make_interval(secs => d.interval_seconds * %s::float8))"
        "   THEN 'consumed' ELSE d.status END"
        " FROM old WHERE d.device_code_hash = old.device_code_hash"
        " RETURNING old.status, d.status, d.expires_at <= now(),"
        "   old.last_poll_at IS NOT NULL AND old.last_poll_at"
        "     >= now() - make_interval(secs => d.interval_seconds * %s::float8),"
        "   d.identity, d.idp_refresh, d.user_code",
        (device_code_hash, tolerance, tolerance),
    )
    return DevicePoll(*rows[0]) if rows else None


# --- session families and refresh tokens --------------------------------------------------


def open_session(
    session_id: str,
    sub: str,
    email: str,
    groups: Sequence[str],
    ttl_seconds: int,
    client_ip: str | None,
    user_agent: str | None,
    sealed_idp_refresh: str | None,
    refresh_token_hash: str,
    db: pool.Database | None = None,
) -> None:
    """One statement: the session family and its first refresh token."""
    (db or pool.get()).execute(
        "WITH s AS (INSERT INTO auth_sessions (id, sub, email, groups, expires_at, client_ip, user_agent, idp_refresh)"
        "  VALUES (%s, %s, %s, %s::jsonb, now() + make_interval(secs => %s), %s, %s, %s) RETURNING id)"
        " INSERT INTO refresh_tokens (token_hash, session_id) SELECT %s, id FROM s",
        (
            session_id,
            sub,
            email,
            json.dumps(list(groups)),
            ttl_seconds,
            client_ip,
            user_agent,
            sealed_idp_refresh,
            refresh_token_hash,
        ),
    )


@dataclass(frozen=True, slots=True)
class RefreshClaim:
    """A presented refresh token and the state of its family, as one claim found them.

    `state` is `claimed` (this request holds the lease: it alone re-checks the
    user and rotates), `busy` (another request holds a live lease: wait for its
    successor) or `rotated` (already used; `successor_sealed` is the response
    that rotated it while `session.refresh_grace_seconds` has not passed, else None).
    """

    state: str
    session_id: str
    email: str
    revoked: bool
    expired: bool
    sealed_idp_refresh: str | None
    successor_sealed: str | None


def claim_refresh_token(
    token_hash: str, claim: str, lease_seconds: float, grace_seconds: float, db: pool.Database | None = None
) -> RefreshClaim | None:
    """Take the token's rotation lease unless it is used or leased; one statement, row-locked. None if unknown.

    A lease older than `lease_seconds` is abandoned (its holder died) and can be taken over.
    """
    rows = (db or pool.get()).execute(
        "WITH old AS (SELECT token_hash, used_at, claimed_at, successor_sealed,"
        "   used_at IS NULL AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => %s)) AS won"
        "   FROM refresh_tokens WHERE token_hash = %s FOR UPDATE)"
        " UPDATE refresh_tokens r SET claim = CASE WHEN old.won THEN %s ELSE r.claim END,"
        "   claimed_at = CASE WHEN old.won THEN now() ELSE r.claimed_at END"
        " FROM old, auth_sessions s WHERE r.token_hash = old.token_hash AND s.id = r.session_id"
        " RETURNING CASE WHEN old.won THEN 'claimed' WHEN old.used_at IS NULL THEN 'busy' ELSE 'rotated' END,"
        "   s.id, s.email, s.revoked_at IS NOT NULL, s.expires_at <= now(), s.idp_refresh,"
        "   CASE WHEN old.used_at >= now() - make_interval(secs => %s) THEN old.successor_sealed END",
        (lease_seconds, token_hash, claim, grace_seconds),
    )
    return RefreshClaim(*rows[0]) if rows else None


def release_refresh_claim(token_hash: str, claim: str, db: pool.Database | None = None) -> None:
    """Give the lease back unused (a temporary failure): the token stays valid for the client's retry."""
    (db or pool.get()).execute(
        "UPDATE refresh_tokens SET claim = NULL, claimed_at = NULL WHERE token_hash = %s AND claim = %s",
        (token_hash, claim),
    )


def rotate_session(
    session_id: str,
    sub: str,
    email: str,
    groups: Sequence[str],
    sealed_idp_refresh: str | None,
    ttl_seconds: int,
    old_token_hash: str,
    claim: str,
    successor_sealed: str,
    grace_seconds: float,
    new_token_hash: str,
    db: pool.Database | None = None,
) -> bool:
    """One statement: retire the leased token (keeping its sealed successor for the grace window),
    refresh the family's user and expiry, add its next refresh token, and clear successors older
    than the window. False when the lease was lost or the family revoked meanwhile.
    """
    rows = (db or pool.get()).execute(
        "WITH t AS (UPDATE refresh_tokens SET used_at = now(), claim = NULL, claimed_at = NULL, successor_sealed = %s"
        "   WHERE token_hash = %s AND session_id = %s AND claim = %s AND used_at IS NULL RETURNING session_id),"
        " s AS (UPDATE auth_sessions SET last_refresh_at = now(), sub = %s, email = %s, groups = %s::jsonb,"
        "   idp_refresh = %s, expires_at = now() + make_interval(secs => %s)"
        "   WHERE id = (SELECT session_id FROM t) AND revoked_at IS NULL RETURNING id),"
        # Rows `t` retires are unused in this statement's snapshot, so this never touches them.
        " c AS (UPDATE refresh_tokens SET successor_sealed = NULL WHERE session_id = (SELECT id FROM s)"
        "   AND successor_sealed IS NOT NULL AND used_at < now() - make_interval(secs => %s))"
        " INSERT INTO refresh_tokens (token_hash, session_id) SELECT %s, id FROM s RETURNING session_id",
        (
            successor_sealed,
            old_token_hash,
            session_id,
            claim,
            sub,
            email,
            json.dumps(list(groups)),
            sealed_idp_refresh,
            ttl_seconds,
            grace_seconds,
            new_token_hash,
        ),
    )
    return bool(rows)


def session_of_refresh_token(token_hash: str, db: pool.Database | None = None) -> tuple[str, str] | None:
    """(session id, email) of the family a refresh token belongs to, used or not."""
    rows = (db or pool.get()).execute(
        "SELECT s.id, s.email FROM refresh_tokens r JOIN auth_sessions s ON s.id = r.session_id WHERE r.token_hash = %s",
        (token_hash,),
    )
    return (rows[0][0], rows[0][1]) if rows else None


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One sign-in (session family) as the admin API lists it; never its tokens."""

    id: str
    sub: str
    email: str
    groups: list[str]
    created_at: datetime
    last_refresh_at: datetime | None
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None
    client_ip: str | None
    user_agent: str | None


_SESSION_COLUMNS = (
    "id, sub, email, groups, created_at, last_refresh_at, expires_at, revoked_at, revoked_by,"
    " revoke_reason, client_ip, user_agent"
)


def list_sessions(
    email: str | None = None,
    active_only: bool = True,
    limit: int = 100,
    after: str | None = None,
    db: pool.Database | None = None,
) -> tuple[list[SessionRow], bool]:
    """Sessions newest first, and whether more follow. `after` is the id of the last one of the previous page."""
    where: list[str] = []
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
    rows, has_more = pages.keyset_page(
        db or pool.get(),
        f"SELECT {_SESSION_COLUMNS} FROM auth_sessions",  # noqa: S608 (constant columns)
        where,
        args,
        "created_at, id",
        True,
        limit,
    )
    return [SessionRow(r[0], r[1], r[2], list(r[3] or []), *r[4:12]) for r in rows], has_more


def latest_session_groups(email: str, db: pool.Database | None = None) -> tuple[tuple[str, ...], datetime] | None:
    """The groups of the user's latest sign-in (`email` lower-case), and when it began (None: never signed in)."""
    rows = (db or pool.get()).execute(
        "SELECT groups, created_at FROM auth_sessions WHERE lower(email) = %s ORDER BY created_at DESC LIMIT 1",
        (email,),
    )
    return (tuple(str(g) for g in rows[0][0] or ()), rows[0][1]) if rows else None


def revoke_sessions(
    actor: str,
    reason: str,
    email: str | None = None,
    session_id: str | None = None,
    db: pool.Database | None = None,
) -> list[tuple[str, str]]:
    """Mark the active sessions of `email` (and/or the one `session_id`) revoked; (id, email) of each."""
    if not email and not session_id:
        raise ValueError("revoke_sessions() needs an email or a session id")
    where, args = [], []
    if session_id:
        where.append("id = %s")
        args.append(session_id)
    if email:
        where.append("lower(email) = lower(%s)")
        args.append(email)
    condition = " AND ".join(where)  # constant fragments; values are parameters
    sql = f"UPDATE auth_sessions SET revoked_at = now(), revoked_by = %s, revoke_reason = %s WHERE {condition} AND revoked_at IS NULL RETURNING id, email"  # noqa: S608
    return [(r[0], r[1]) for r in (db or pool.get()).execute(sql, (actor, reason, *args))]


def revoked_since(horizon_seconds: int, db: pool.Database | None = None) -> frozenset[str]:
    """Ids of sessions revoked in the last `horizon_seconds`."""
    rows = (db or pool.get()).execute(
        "SELECT id FROM auth_sessions WHERE revoked_at > now() - make_interval(secs => %s)", (horizon_seconds,)
    )
    return frozenset(r[0] for r in rows)


# --- retention: bounded deletes by age (common.admin.retention schedules them) ----------------


def sweep_sessions(before: datetime, batch: int, db: pool.Database | None = None) -> int:
    """Delete up to `batch` sign-ins that expired or were revoked before `before`, with their refresh
    tokens (ON DELETE CASCADE). Their access tokens expired long before; a refresh finds no session."""
    rows = (db or pool.get()).execute(
        "WITH gone AS (DELETE FROM auth_sessions WHERE id = ANY(ARRAY("
        " (SELECT id FROM auth_sessions WHERE expires_at < %s LIMIT %s)"
        " UNION (SELECT id FROM auth_sessions WHERE revoked_at < %s LIMIT %s))) RETURNING 1)"
        " SELECT count(*) FROM gone",
        (before, batch, before, batch),
    )
    return int(rows[0][0]) if rows else 0


def sweep_device_codes(before: datetime, batch: int, db: pool.Database | None = None) -> int:
    """Delete up to `batch` device codes that expired before `before` (index device_codes_expires)."""
    rows = (db or pool.get()).execute(
        "WITH gone AS (DELETE FROM device_codes WHERE device_code_hash = ANY(ARRAY("
        " SELECT device_code_hash FROM device_codes WHERE expires_at < %s LIMIT %s)) RETURNING 1)"
        " SELECT count(*) FROM gone",
        (before, batch),
    )
    return int(rows[0][0]) if rows else 0
