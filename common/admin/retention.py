"""The retention sweep: which rows of which table go when, from `retention:` in gateway.yaml.

Each table's owner holds its delete (`spend.store`, `admin.fleet`, `audit.records`,
`auth.store`, `auth.ratelimit`); this module only turns the config into cut-off
times and hands the deletes to `db.retention.sweep` (bounded batches, one
advisory lock across instances, a time budget). It is triggered by
`python -m gateway retention sweep`, run daily by Cloud Scheduler (see
docs/operations.md); nothing on the request path runs it.
"""

from __future__ import annotations

import calendar
import functools
from datetime import UTC, date, datetime, timedelta

from common.admin import fleet
from common.audit import records
from common.auth import ratelimit
from common.auth import store as auth_store
from common.config import Config
from common.core import logs
from common.db import pool, retention
from common.spend import store as spend_store


def months_before(day: date, months: int) -> date:
    """The same day of the month `months` earlier (clamped to that month's last day)."""
    year, month0 = divmod(day.year * 12 + day.month - 1 - months, 12)
    return date(year, month0 + 1, min(day.day, calendar.monthrange(year, month0 + 1)[1]))


def tasks(cfg: Config, now: datetime) -> list[retention.Task]:
    """The deletes the config asks for, as of `now`, oldest data's tables first."""
    r = cfg.retention
    db = pool.get()
    today = now.astimezone(UTC).date()
    out: list[retention.Task] = []
    if r.spend_usage_months is not None:
        cut = months_before(today, r.spend_usage_months)
        out.append(retention.Task("spend_usage", functools.partial(spend_store.sweep_usage, db, cut)))
        # The fleet tables summarise usage rows: the same cut keeps them equal to what is left of the ledger.
        out.append(retention.Task("fleet_client_days", functools.partial(fleet.sweep_client_days, db, cut)))
        out.append(retention.Task("fleet_client_sessions", functools.partial(fleet.sweep_client_sessions, db, cut)))
        out.append(retention.Task("fleet_sessions", functools.partial(fleet.sweep_sessions, db, cut)))
    if r.spend_rollup_months is not None:
        cut = months_before(today, r.spend_rollup_months)
        out.append(retention.Task("spend_daily", functools.partial(spend_store.sweep_rollups, db, cut)))
        out.append(retention.Task("spend_counters", functools.partial(spend_store.sweep_counters, db, cut)))
    out.append(retention.Task("spend_holds", functools.partial(spend_store.sweep_holds, db)))
    if r.audit_days is not None:
        cut_at = now - timedelta(days=r.audit_days)
        out.append(retention.Task("audit_log", lambda n: records.sweep(db, cut_at, n)))
    if r.sessions_days_after_expiry is not None:
        sessions_cut = now - timedelta(days=r.sessions_days_after_expiry)
        out.append(retention.Task("auth_sessions", lambda n: auth_store.sweep_sessions(sessions_cut, n, db)))
    codes_cut = now - timedelta(hours=r.device_codes_hours_after_expiry)
    out.append(retention.Task("device_codes", lambda n: auth_store.sweep_device_codes(codes_cut, n, db)))
    # A window is over once its start is a full window old: the longest one bounds them all.
    longest = max(
        cfg.rate_limits.device_authorization.window_seconds,
        cfg.rate_limits.device_verify.window_seconds,
        cfg.rate_limits.token.window_seconds,
    )
    limits_cut = now.timestamp() - longest - r.rate_limits_hours_after_window * 3600
    out.append(retention.Task("rate_limits", lambda n: ratelimit.sweep(limits_cut, n, db)))
    return out


def sweep(cfg: Config, now: datetime | None = None) -> retention.Outcome:
    """One sweep of every table, bounded by `retention.max_seconds`; logged as one line."""
    outcome = retention.sweep(
        pool.get(),
        tasks(cfg, now or datetime.now(UTC)),
        batch_rows=cfg.retention.batch_rows,
        max_seconds=cfg.retention.max_seconds,
    )
    logs.info(
        "retention sweep",
        skipped=outcome.skipped,
        complete=outcome.complete,
        seconds=round(outcome.seconds, 3),
        batches=outcome.batches,
        deleted=outcome.deleted,
    )
    return outcome
