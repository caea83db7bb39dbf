"""Alert events and their delivery: the insert-once claim, webhook payloads, HMAC signatures, retries with backoff.

An event row (`alert_events`, migration 005) is inserted once per (cap,
period, threshold) by whichever instance sees the threshold crossed first;
the same statement queues one `alert_deliveries` row per destination. Any
instance then leases a due delivery (`FOR UPDATE SKIP LOCKED`, 60 s lease),
POSTs it, and marks it delivered, or schedules the next attempt
(`alerts.backoff_seconds` × 2^(attempt-1), at most 10 minutes) until
`alerts.max_attempts`. A lease that expires (the instance died mid-POST) is
taken over by the next instance that looks, so delivery is at least once and,
with a receiver that answers 2xx, exactly once per destination; the
`X-Gateway-Alert-Id` header lets a receiver drop a duplicate anyway.

Generic webhooks get a JSON body signed with HMAC-SHA256 over
`"{timestamp}.{body}"` in `X-Gateway-Signature: t=<unix>,v1=<hex>`; Slack
destinations get `{"text": …}` (an incoming webhook carries its own secret in
its URL).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import requests

from common.audit import records as audit
from common.config import AlertDestination, Config
from common.core import logs, periods
from common.db import pool as store
from common.spend import pricing

LEASE_SECONDS = 60
MAX_BACKOFF_SECONDS = 600.0
SIGNATURE_HEADER = "X-Gateway-Signature"
ID_HEADER = "X-Gateway-Alert-Id"
USER_AGENT = "claude-gateway-alerts/1"

_http = requests.Session()


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    cap_id: str
    scope_type: str
    scope_id: str
    cap_key: str
    period: str
    period_start: date
    threshold: int
    cap_micros: int
    spent_micros: int
    created_at: datetime


def claim(
    db: store.Database,
    cap_id: str,
    scope_type: str,
    scope_id: str,
    cap_key: str,
    period: str,
    period_start: date,
    threshold: int,
    cap_micros: int,
    spent_micros: int,
    destinations: list[str],
) -> int | None:
    """Insert the event once (and its deliveries); its id if this call inserted it, None if it existed."""
    rows = db.execute(
        "WITH e AS (INSERT INTO alert_events (cap_id, scope_type, scope_id, cap_key, period, period_start, threshold,"
        " cap_micros, spent_micros) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (cap_id, period, period_start, threshold) DO NOTHING RETURNING id),"
        " d AS (INSERT INTO alert_deliveries (event_id, destination) SELECT e.id, u.name FROM e, unnest(%s::text[]) AS u(name))"
        " SELECT id FROM e",
        (
            cap_id,
            scope_type,
            scope_id,
            cap_key,
            period,
            period_start,
            threshold,
            cap_micros,
            spent_micros,
            destinations,
        ),
    )
    return int(rows[0][0]) if rows else None


def _scope(event: Event) -> dict[str, Any]:
    if event.scope_type == "user":
        return {"type": "user", "user_id": event.scope_id}
    if event.scope_type == "rbac_group":
        pooled = event.cap_id.endswith(":pooled")
        scope: dict[str, Any] = {"type": "rbac_group", "rbac_group_id": event.scope_id, "pooled": pooled}
        if not pooled:
            scope["user_id"] = event.cap_key.removeprefix("user:")
        return scope
    return {"type": "organization"}


def payload(event: Event) -> dict[str, Any]:
    """The generic JSON body of an alert (amounts in US cents as decimal strings, as in the admin API)."""
    period = event.period
    return {
        "type": "budget_alert",
        "id": f"alert_{event.id}",
        "threshold_percent": event.threshold,
        "scope": _scope(event),
        "period": period,
        "period_start": event.period_start.isoformat(),
        "resets_at": periods.reset_at(period, event.period_start).strftime("%Y-%m-%dT%H:%M:%SZ"),  # type: ignore[arg-type]
        "limit": {"amount": pricing.cents_string(event.cap_micros), "currency": "USD"},
        "spend": {"amount": pricing.cents_string(event.spent_micros), "currency": "USD"},
        "utilization_percent": round(100 * event.spent_micros / event.cap_micros, 2) if event.cap_micros else None,
        "fired_at": event.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _who(event: Event) -> str:
    scope = _scope(event)
    if scope["type"] == "user":
        return str(scope["user_id"])
    if scope["type"] == "rbac_group":
        if scope["pooled"]:
            return f"group {scope['rbac_group_id']} (pooled)"
        return f"{scope['user_id']} (per-member limit of group {scope['rbac_group_id']})"
    return "the organization"


def slack_payload(event: Event) -> dict[str, Any]:
    body = payload(event)
    text = (
        f":warning: {_who(event)} has used {body['utilization_percent']}% of the {event.period} spend limit "
        f"({pricing.format_usd(event.spent_micros)} of {pricing.format_usd(event.cap_micros)}); "
        f"it passed {event.threshold}%. Resets {body['resets_at']}."
    )
    return {"text": text}


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_seconds: int = 300) -> bool:
    """What a receiver does: check the signature (constant time) and that the timestamp is fresh."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}")


def post(dest: AlertDestination, body_obj: dict[str, Any], alert_id: str) -> tuple[bool, str]:
    """POST one payload; (2xx?, what happened)."""
    body = json.dumps(body_obj, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, ID_HEADER: alert_id}
    if dest.type == "webhook" and dest.secret:
        headers[SIGNATURE_HEADER] = sign(dest.secret, int(time.time()), body)
    try:
        response = _http.post(dest.url, data=body, headers=headers, timeout=dest.timeout_seconds, allow_redirects=False)
    except requests.RequestException as exc:
        return False, type(exc).__name__
    if 200 <= response.status_code < 300:
        return True, f"HTTP {response.status_code}"
    return False, f"HTTP {response.status_code}"


_EVENT_COLUMNS = (
    "e.id, e.cap_id, e.scope_type, e.scope_id, e.cap_key, e.period, e.period_start, e.threshold,"
    " e.cap_micros, e.spent_micros, e.created_at"
)


def _event(r: tuple[Any, ...]) -> Event:
    return Event(
        int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), r[6], int(r[7]), int(r[8]), int(r[9]), r[10]
    )


def deliver_due(cfg: Config, db: store.Database, limit: int = 20) -> int:
    """Lease and send the deliveries that are due (any instance's); returns how many were attempted."""
    settings = cfg.alerts
    if settings is None:
        return 0
    rows = db.execute(
        "UPDATE alert_deliveries d SET lease_until = now() + make_interval(secs => %s), attempts = d.attempts + 1"  # noqa: S608
        " FROM alert_events e WHERE e.id = d.event_id AND (d.event_id, d.destination) IN ("
        "  SELECT event_id, destination FROM alert_deliveries WHERE status = 'pending' AND next_attempt_at <= now()"
        "  AND (lease_until IS NULL OR lease_until < now()) ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)"
        f" RETURNING d.destination, d.attempts, {_EVENT_COLUMNS}",
        (LEASE_SECONDS, limit),
    )
    by_name = {d.name: d for d in settings.destinations}
    for row in rows:
        name, attempts, event = str(row[0]), int(row[1]), _event(row[2:])
        dest = by_name.get(name)
        if dest is None:
            ok, detail = False, "destination no longer configured"
            attempts = settings.max_attempts
        else:
            body = slack_payload(event) if dest.type == "slack" else payload(event)
            ok, detail = post(dest, body, f"alert_{event.id}")
        _record(cfg, db, event, name, attempts, ok, detail)
    return len(rows)


def _record(cfg: Config, db: store.Database, event: Event, name: str, attempts: int, ok: bool, detail: str) -> None:
    settings = cfg.alerts
    assert settings is not None
    target = f"alert_{event.id}"
    if ok:
        db.execute(
            "UPDATE alert_deliveries SET status = 'delivered', delivered_at = now(), lease_until = NULL, last_error = NULL"
            " WHERE event_id = %s AND destination = %s",
            (event.id, name),
        )
        audit.record(
            "alert.delivered",
            actor="system",
            target=target,
            detail={"destination": name, "attempts": attempts, "cap": event.cap_id, "threshold": event.threshold},
            db=db,
        )
        return
    if attempts >= settings.max_attempts:
        db.execute(
            "UPDATE alert_deliveries SET status = 'failed', lease_until = NULL, last_error = %s"
            " WHERE event_id = %s AND destination = %s",
            (detail, event.id, name),
        )
        logs.error("budget alert not delivered", destination=name, alert=target, attempts=attempts, error=detail)
        audit.record(
            "alert.failed",
            actor="system",
            target=target,
            detail={"destination": name, "attempts": attempts, "error": detail},
            db=db,
        )
        return
    delay = min(settings.backoff_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
    db.execute(
        "UPDATE alert_deliveries SET next_attempt_at = now() + make_interval(secs => %s), lease_until = NULL,"
        " last_error = %s WHERE event_id = %s AND destination = %s",
        (delay, detail, event.id, name),
    )
    logs.warning(
        "budget alert delivery failed; will retry", destination=name, alert=target, attempts=attempts, error=detail
    )


def seconds_until_due(db: store.Database) -> float | None:
    """How long until the next pending delivery is due (0 if one is due now), or None when none is pending."""
    rows = db.execute(
        "SELECT extract(epoch FROM min(greatest(next_attempt_at, coalesce(lease_until, next_attempt_at))) - now())"
        " FROM alert_deliveries WHERE status = 'pending'"
    )
    if not rows or rows[0][0] is None:
        return None
    return max(0.0, float(rows[0][0]))


@dataclass(frozen=True, slots=True)
class TestResult:
    destination: str
    ok: bool
    detail: str


def send_test(cfg: Config, who: Any) -> list[TestResult]:
    """The console's test button: one `budget_alert.test` payload to every destination, now; audited."""
    settings = cfg.alerts
    results: list[TestResult] = []
    if settings is None:
        return results
    now = datetime.now(UTC)
    sample = Event(
        0, "test", "user", who.actor, f"user:{who.actor}", "daily", now.date(), 75, 100_000_000, 75_000_000, now
    )
    for dest in settings.destinations:
        body = slack_payload(sample) if dest.type == "slack" else payload(sample)
        if dest.type == "slack":
            body["text"] = "[test] " + body["text"]
        else:
            body["type"] = "budget_alert.test"
            body["id"] = "alert_test"
        ok, detail = post(dest, body, "alert_test")
        results.append(TestResult(dest.name, ok, detail))
    who.audit(
        "alert.test",
        "alerts",
        None,
        {"results": [{"destination": r.destination, "ok": r.ok, "detail": r.detail} for r in results]},
    )
    return results


@dataclass(frozen=True, slots=True)
class EventView:
    event: Event
    deliveries: list[dict[str, Any]]


def recent_events(db: store.Database, limit: int) -> list[EventView]:
    rows = db.execute(
        f"SELECT {_EVENT_COLUMNS}, coalesce((SELECT jsonb_agg(jsonb_build_object('destination', d.destination,"  # noqa: S608
        " 'status', d.status, 'attempts', d.attempts, 'last_error', d.last_error) ORDER BY d.destination)"
        " FROM alert_deliveries d WHERE d.event_id = e.id), '[]'::jsonb)"
        " FROM alert_events e ORDER BY e.id DESC LIMIT %s",
        (limit,),
    )
    out = []
    for r in rows:
        value = r[11]
        out.append(EventView(_event(r[:11]), json.loads(value) if isinstance(value, str) else list(value)))
    return out
