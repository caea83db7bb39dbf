"""The console's pages: Overview, Users and a user, Groups and a group, Fleet, Limits, Audit log, Alerts.

Figures come from the ledger's own functions (`ledger.period_spend`,
`cached_limits`, `applicable_caps`, `standings`) and from the stores that own
the tables (`spend.store`, `admin.fleet`, `auth.store`, `audit.records`); writes go
through the admin API's code (`spend_limits.upsert/change/remove`, the
session store's `revoke`) with the API's validation, messages and audit rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlencode

from flask import Response

from common.admin import api, spend_limits
from common.admin import fleet as admin_fleet
from common.admin import sessions as admin_sessions
from common.alerts import delivery
from common.audit import records as audit_records
from common.auth import revocation
from common.auth import store as session_store
from common.console import charts
from common.console.web import BASE, Ctx, page, render
from common.core import periods
from common.core.errors import GatewayError
from common.core.identity import Identity
from common.core.periods import Period
from common.db import pool as store
from common.policy import hints
from common.spend import caps as spend_caps
from common.spend import store as spend_store

PAGE_SIZE = 25
CHART_DAYS = 30


def _pager(number: int, pages: int, link: Callable[[int], str]) -> dict[str, Any]:
    """A paged table's template values: this page, how many, and the links either side (None at the ends)."""
    return {
        "number": number,
        "pages": pages,
        "prev_link": link(number - 1) if number > 1 else None,
        "next_link": link(number + 1) if number < pages else None,
    }


def _redirect(location: str) -> Response:
    return Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value else default
    except ValueError:
        return default
    return max(low, min(high, number))


@dataclass(frozen=True, slots=True)
class PeriodFigure:
    period: Period
    spent_micros: int
    held_micros: int
    cap_micros: int | None
    elapsed: float  # fraction of the period gone
    resets_at: datetime

    @property
    def percent(self) -> float | None:
        return None if not self.cap_micros else 100 * self.spent_micros / self.cap_micros

    @property
    def burn_per_day(self) -> int:
        days = max(self.elapsed * _period_days(self.period, self.resets_at), 1 / 24)
        return int(self.spent_micros / days)

    @property
    def projected_micros(self) -> int:
        return int(self.spent_micros / max(self.elapsed, 1 / 24 / 31))

    @property
    def projected_percent(self) -> float | None:
        return None if not self.cap_micros else 100 * self.projected_micros / self.cap_micros


def _period_days(period: Period, resets_at: datetime) -> float:
    first = periods.start(period, (resets_at - timedelta(seconds=1)).date())
    return float((resets_at.date() - first).days)


def _figures(now: datetime) -> list[PeriodFigure]:
    today = now.date()
    spend = spend_store.period_spend(
        store.get(), [spend_caps.ORG_KEY] * 3, [periods.start(p, today) for p in periods.PERIODS], today
    )
    caps = {limit.period: limit.amount_micros for limit in spend_caps.cached_limits().org}
    out = []
    for period, (spent, held) in zip(periods.PERIODS, spend, strict=True):
        begin = datetime.combine(periods.start(period, today), datetime.min.time(), UTC)
        reset = periods.reset_at(period, today)
        elapsed = (now - begin).total_seconds() / (reset - begin).total_seconds()
        out.append(PeriodFigure(period, spent, held, caps.get(period), elapsed, reset))
    return out


def _chart(series: spend_store.Series, first: date, title: str) -> tuple[Any, list[tuple[str, int]]]:
    segments = [charts.Segment(r.day, r.model, r.cost_micros) for r in series.rows]
    return charts.stacked_days(segments, first, CHART_DAYS, title)


@page()
def overview(ctx: Ctx) -> Response:
    now = datetime.now(UTC)
    today = now.date()
    db = store.get()
    first = today - timedelta(days=CHART_DAYS - 1)
    series = spend_store.daily_by_model(db, first, today)
    svg, legend = _chart(series, first, f"Spend per day by model, last {CHART_DAYS} days")
    month_start = periods.start("monthly", today)
    top, users_total, _ = spend_store.users_by_spend(db, month_start, today, "", 10, 0)
    return render(
        "overview.html",
        ctx=ctx,
        figures=_figures(now),
        series=series,
        chart=svg,
        legend=legend,
        top=top,
        users_total=users_total,
        first=first,
        today=today,
        nav="overview",
    )


WINDOWS: dict[str, str] = {
    "daily": "today",
    "weekly": "this ISO week",
    "monthly": "this month",
    "yearly": "last 365 days",
}


def _window(name: str, today: date) -> date:
    if name == "yearly":
        return today - timedelta(days=364)
    return periods.start(name, today)  # type: ignore[arg-type]


def _listing_args(ctx: Ctx) -> tuple[str, str, int]:
    """A searchable ranked list's query: (search text, spend window, page number), each bounded."""
    args = ctx.request.args
    window = args.get("window", "monthly")
    return args.get("q", "")[:200], window if window in WINDOWS else "monthly", _int(args.get("page"), 1, 1, 100_000)


@page()
def users(ctx: Ctx) -> Response:
    search, window, number = _listing_args(ctx)
    today = periods.today()
    db = store.get()
    rows, total, total_spend = spend_store.users_by_spend(
        db, _window(window, today), today, search, PAGE_SIZE, (number - 1) * PAGE_SIZE
    )
    seen = spend_store.last_seen(db, [r.email for r in rows])
    pages = max(1, -(-total // PAGE_SIZE))

    def link(n: int) -> str:
        return f"{BASE}/users?" + urlencode({"q": search, "window": window, "page": n})

    return render(
        "users.html",
        ctx=ctx,
        rows=rows,
        seen=seen,
        total=total,
        total_spend=total_spend,
        search=search,
        window=window,
        windows=WINDOWS,
        **_pager(number, pages, link),
        nav="users",
    )


def _resets_in(epoch: int) -> str:
    seconds = max(0, epoch - int(datetime.now(UTC).timestamp()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours // 24}d {hours % 24}h" if hours >= 48 else f"{hours}h {rest // 60}m"


@dataclass(frozen=True, slots=True)
class CapView:
    standing: spend_caps.Standing

    @property
    def percent(self) -> float:
        return 100 * self.standing.used / self.standing.cap.cap_micros if self.standing.cap.cap_micros else 100.0

    @property
    def resets_in(self) -> str:
        return _resets_in(self.standing.reset_epoch)

    @property
    def resets_at(self) -> str:
        return datetime.fromtimestamp(self.standing.reset_epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")

    @property
    def label(self) -> str:
        cap = self.standing.cap
        if cap.scope == "user":
            return "own limit"
        if cap.scope == "rbac_group":
            return f"group {cap.scope_id} ({'pooled' if cap.pooled else 'per member'})"
        return "organization"


def _latest_groups(db: store.Database, email: str) -> tuple[str, ...]:
    """The groups the user last signed in (or was metered) with: the newer of the two."""
    found = [
        g
        for g in (session_store.latest_session_groups(email, db=db), spend_store.latest_usage_groups(db, email))
        if g is not None
    ]
    return max(found, key=lambda g: g[1])[0] if found else ()


@page(write=True)
def user_item(ctx: Ctx) -> Response:
    rest = ctx.request.path[len(f"{BASE}/users/") :].strip("/")
    if ctx.request.method == "POST":
        if not rest.endswith("/revoke"):
            raise GatewayError(404, "No such console action.", "not_found_error")
        return _revoke(ctx, rest[: -len("/revoke")])
    email = rest.lower()
    if not email or "/" in email:
        raise GatewayError(404, "No such user page.", "not_found_error")
    today = periods.today()
    db = store.get()
    first = today - timedelta(days=CHART_DAYS - 1)
    series = spend_store.daily_by_model(db, first, today, user=email)
    svg, legend = _chart(series, first, f"{email}: spend per day by model, last {CHART_DAYS} days")
    groups = _latest_groups(db, email)
    cfg = ctx.cfg
    caps = spend_caps.applicable_caps(cfg, Identity(sub=email, email=email, groups=groups), spend_caps.cached_limits())
    standings = [CapView(s) for s in spend_caps.standings(db, caps, today)]
    rows, _ = session_store.list_sessions(email=email, active_only=False, limit=20)
    sessions = [admin_sessions.render(row) for row in rows]
    before_id = _int(ctx.request.args.get("before"), 0, 0, 2**62)
    cursor = spend_store.request_cursor(db, before_id) if before_id else None
    requests_page, more = spend_store.recent_requests(db, email, cursor, PAGE_SIZE)
    older = f"{BASE}/users/{quote(email)}?before={requests_page[-1].id}#requests" if more and requests_page else None
    return render(
        "user.html",
        ctx=ctx,
        email=email,
        groups=groups,
        series=series,
        chart=svg,
        legend=legend,
        standings=standings,
        sessions=sessions,
        requests=requests_page,
        older=older,
        done=ctx.request.args.get("done"),
        meter=charts.meter,
        nav="users",
    )


def _revoke(ctx: Ctx, email: str) -> Response:
    session_id = ctx.request.form.get("session_id") or None
    who = ctx.caller()
    count = revocation.revoke(
        email=email.lower(),
        session_id=session_id,
        actor=ctx.viewer.email,
        reason="admin",
        client_ip=who.client_ip,
        user_agent=who.user_agent,
    )
    return _redirect(f"{BASE}/users/{quote(email.lower())}?done=revoked-{count}#sessions")


# --- limits --------------------------------------------------------------------------------


def _cents(dollars: str) -> str:
    """The console takes dollars; the API takes cents as a decimal string."""
    text = dollars.strip().lstrip("$").replace(",", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise api.invalid(
            "amount", f"expected an amount in US dollars, e.g. 50 or 12.50, got {dollars[:40]!r}"
        ) from None
    if not value.is_finite():
        raise api.invalid("amount", "expected an amount in US dollars, e.g. 50 or 12.50")
    return format((value * 100).normalize(), "f")


def _limit_body(form: dict[str, str], create: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"amount": _cents(form.get("amount", ""))}
    if form.get("pooled") is not None or not create:
        body["pooled"] = form.get("pooled") == "on"
    if create:
        kind = form.get("scope_type", "")
        scope: dict[str, Any] = {"type": kind}
        if kind == "user":
            scope["user_id"] = form.get("scope_id", "")
        elif kind == "rbac_group":
            scope["rbac_group_id"] = form.get("scope_id", "")
        body["scope"] = scope
        body["period"] = form.get("period", "")
        if kind != "rbac_group":
            body.pop("pooled", None)
    return body


@page(write=True)
def limits(ctx: Ctx) -> Response:
    error = None
    form: dict[str, str] = {}
    status = 200
    if ctx.request.method == "POST":
        form = {k: v for k, v in ctx.request.form.items() if k != "csrf_token"}
        try:
            obj, created = spend_limits.upsert(ctx.caller(), _limit_body(form, create=True))
        except GatewayError as exc:
            error, status = exc.message, exc.status
        else:
            return _redirect(f"{BASE}/limits?done={'created' if created else 'updated'}-{obj['id']}")
    scope_type = ctx.request.args.get("scope_type") or None
    if scope_type not in (None, *spend_limits.SCOPES):
        scope_type = None
    number = _int(ctx.request.args.get("page"), 1, 1, 100_000)
    rows, total = spend_limits.listing(scope_type, PAGE_SIZE, (number - 1) * PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))

    def link(n: int) -> str:
        return f"{BASE}/limits?" + urlencode({"scope_type": scope_type or "", "page": n})

    return render(
        "limits.html",
        status,
        ctx,
        rows=rows,
        total=total,
        error=error,
        form=form,
        scope_type=scope_type,
        done=ctx.request.args.get("done"),
        **_pager(number, pages, link),
        periods=periods.PERIODS,
        nav="limits",
    )


@page(write=True)
def limit_item(ctx: Ctx) -> Response:
    rest = ctx.request.path[len(f"{BASE}/limits/") :].strip("/")
    limit_id, _, action = rest.partition("/")
    error = None
    status = 200
    if ctx.request.method == "POST":
        try:
            if action == "delete":
                spend_limits.remove(ctx.caller(), limit_id)
                return _redirect(f"{BASE}/limits?done=deleted-{limit_id}")
            if action:
                raise GatewayError(404, "No such console action.", "not_found_error")
            form = dict(ctx.request.form.items())
            spend_limits.change(ctx.caller(), limit_id, _limit_body(form, create=False))
            return _redirect(f"{BASE}/limits?done=updated-{limit_id}")
        except GatewayError as exc:
            if exc.status == 404:
                raise
            error, status = exc.message, exc.status
    obj = spend_limits.get(limit_id)
    return render("limit.html", status, ctx, limit=obj, error=error, nav="limits")


# --- audit log -----------------------------------------------------------------------------


@page()
def audit(ctx: Ctx) -> Response:
    args = ctx.request.args
    filters = {name: args.get(name, "")[:200].strip() for name in ("action", "actor", "target")}
    older = _int(args.get("before"), 0, 0, 2**62) or None
    db = store.get()
    prefix, actor, target = filters["action"] or None, filters["actor"] or None, filters["target"] or None
    total = audit_records.count(action_prefix=prefix, actor=actor, target=target, db=db)
    rows, more = audit_records.events(
        limit=50, action_prefix=prefix, actor=actor, target=target, older_than=older, db=db
    )
    next_link = f"{BASE}/audit?" + urlencode({**filters, "before": rows[-1].id}) if more and rows else None
    return render(
        "audit.html",
        ctx=ctx,
        rows=rows,
        total=total,
        filters=filters,
        actions=audit_records.actions(db),
        next_link=next_link,
        first_link=f"{BASE}/audit?" + urlencode(filters) if older else None,
        nav="audit",
    )


# --- alerts --------------------------------------------------------------------------------


@page(write=True)
def alerts(ctx: Ctx) -> Response:
    results: list[delivery.TestResult] = []
    if ctx.request.method == "POST":
        results = delivery.send_test(ctx.cfg, ctx.caller())
    events = delivery.recent_events(store.get(), 50)
    return render(
        "alerts.html",
        ctx=ctx,
        settings=ctx.cfg.alerts,
        events=events,
        results=results,
        nav="alerts",
    )


# --- groups --------------------------------------------------------------------------------


@page()
def groups(ctx: Ctx) -> Response:
    search, window, number = _listing_args(ctx)
    today = periods.today()
    rows, total, total_spend = spend_store.groups_by_spend(
        store.get(), _window(window, today), today, search, PAGE_SIZE, (number - 1) * PAGE_SIZE
    )
    by_group = spend_caps.cached_limits().by_group
    pages = max(1, -(-total // PAGE_SIZE))

    def link(n: int) -> str:
        return f"{BASE}/groups?" + urlencode({"q": search, "window": window, "page": n})

    return render(
        "groups.html",
        ctx=ctx,
        rows=rows,
        caps={name: len(by_group.get(name, ())) for name, _ in rows},
        total=total,
        total_spend=total_spend,
        search=search,
        window=window,
        windows=WINDOWS,
        **_pager(number, pages, link),
        nav="groups",
    )


@dataclass(frozen=True, slots=True)
class MemberCap:
    """A per-member cap of a group: each member is held to it on their own spend (see `admin.group_limit_mode`)."""

    limit: spend_store.Limit
    members: int
    at_cap: int
    fullest: str | None
    fullest_micros: int
    reset_epoch: int

    @property
    def percent(self) -> float:
        return 100 * self.fullest_micros / self.limit.amount_micros if self.limit.amount_micros else 100.0

    @property
    def resets_in(self) -> str:
        return _resets_in(self.reset_epoch)


@page()
def group_item(ctx: Ctx) -> Response:
    name = ctx.request.path[len(f"{BASE}/groups/") :].strip("/").lower()
    if not name or "/" in name:
        raise GatewayError(404, "No such group page.", "not_found_error")
    today = periods.today()
    db = store.get()
    first = today - timedelta(days=CHART_DAYS - 1)
    raw = spend_store.group_daily_by_model(db, name, first, today)
    rows = [spend_store.DayModel(r[0], str(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in raw if int(r[7]) == 0]
    total = next((r for r in raw if int(r[7]) != 0), None)
    totals = (
        (int(total[2] or 0), int(total[3]), int(total[4]), int(total[5] or 0), int(total[6] or 0))
        if total
        else (0,) * 5
    )
    series = spend_store.Series(rows, *totals)
    svg, legend = _chart(series, first, f"Group {name}: spend per day by model, last {CHART_DAYS} days")
    limits = spend_caps.cached_limits()
    pooled = [
        spend_caps.Cap(spend_caps.group_key(name), lim.period, lim.amount_micros, "rbac_group", name, True)
        for lim in limits.by_group.get(name, ())
        if lim.pooled
    ]
    org = [spend_caps.Cap(spend_caps.ORG_KEY, lim.period, lim.amount_micros, "organization", "") for lim in limits.org]
    standings = [CapView(s) for s in spend_caps.standings(db, pooled + org, today)]
    per_member = []
    for lim in limits.by_group.get(name, ()):
        if lim.pooled:
            continue
        figures = spend_store.member_standing(db, name, periods.start(lim.period, today), today, lim.amount_micros)
        per_member.append(MemberCap(lim, *figures, periods.reset_epoch(lim.period, today)))
    number = _int(ctx.request.args.get("page"), 1, 1, 100_000)
    month = periods.start("monthly", today)
    members, member_count, member_spend = spend_store.group_members(
        db, name, month, today, PAGE_SIZE, (number - 1) * PAGE_SIZE
    )
    pages = max(1, -(-member_count // PAGE_SIZE))

    def link(n: int) -> str:
        return f"{BASE}/groups/{quote(name)}?page={n}#members"

    return render(
        "group.html",
        ctx=ctx,
        name=name,
        series=series,
        chart=svg,
        legend=legend,
        standings=standings,
        per_member=per_member,
        mode=ctx.cfg.admin.group_limit_mode if ctx.cfg.admin else "min",
        members=members,
        member_count=member_count,
        member_spend=member_spend,
        **_pager(number, pages, link),
        meter=charts.meter,
        nav="groups",
    )


# --- fleet ---------------------------------------------------------------------------------

# Read from the fleet tables (migration 012, `admin.fleet`): ~one row per developer and day, not per
# request. A window is the UTC days first..today; docs/console.md has each window's timing on a year of data.
FLEET_WINDOWS = {"1": "today (UTC)", "7": "last 7 days", "30": "last 30 days"}
CHECKS = {
    "match": "runs the settings served",
    "unknown": "sends another checksum",
    "missing": "sends no checksum",
    "none": "not asked",
}


def version_of(client: str | None) -> str:
    """`claude-cli/2.1.333` -> `Claude Code 2.1.333`; anything else as sent ('unknown' when none was recorded)."""
    if not client:
        return "unknown"
    product, _, version = client.partition("/")
    if product in ("claude-cli", "claude-code") and version:
        return f"Claude Code {version}"
    return client


@page()
def fleet(ctx: Ctx) -> Response:
    args = ctx.request.args
    days = args.get("days", "7")
    if days not in FLEET_WINDOWS:
        days = "7"
    search = args.get("q", "")[:200]
    check = args.get("check") or None
    if check not in (None, *CHECKS):
        check = None
    today = periods.today()
    first = today - timedelta(days=int(days) - 1)
    db = store.get()
    raw = admin_fleet.client_versions(db, first)
    versions = [r[:5] for r in raw if r[5] == 0]
    version_total = next((r for r in raw if r[5] != 0), None)
    checks = admin_fleet.session_checks(db, first)
    number = _int(args.get("page"), 1, 1, 100_000)
    sessions, session_total = admin_fleet.latest_sessions(db, first, search, check, PAGE_SIZE, (number - 1) * PAGE_SIZE)
    unumber = _int(args.get("upage"), 1, 1, 100_000)
    seen, seen_total = admin_fleet.users_last_seen(db, first, search, PAGE_SIZE, (unumber - 1) * PAGE_SIZE)
    pages = max(1, -(-session_total // PAGE_SIZE))
    upages = max(1, -(-seen_total // PAGE_SIZE))
    state = {"days": days, "q": search, "check": check or "", "page": number, "upage": unumber}

    def link(**change: Any) -> str:
        return f"{BASE}/fleet?" + urlencode({**state, **change})

    return render(
        "fleet.html",
        ctx=ctx,
        days=days,
        windows=FLEET_WINDOWS,
        search=search,
        check=check,
        checks=checks,
        check_labels=CHECKS,
        versions=versions,
        version_total=version_total,
        version_of=version_of,
        sessions=sessions,
        session_total=session_total,
        seen=seen,
        seen_total=seen_total,
        number=number,
        pages=pages,
        unumber=unumber,
        upages=upages,
        prev_link=link(page=number - 1) + "#sessions" if number > 1 else None,
        next_link=link(page=number + 1) + "#sessions" if number < pages else None,
        uprev_link=link(upage=unumber - 1) + "#seen" if unumber > 1 else None,
        unext_link=link(upage=unumber + 1) + "#seen" if unumber < upages else None,
        check_link=lambda value: link(check=value, page=1),
        accept_hours=hints.ACCEPT_HOURS,
        nav="fleet",
    )
