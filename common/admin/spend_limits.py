"""`/v1/organizations/spend_limits`: list, upsert, get, update, delete.

Objects follow the shape of Anthropic's Admin API: `scope` is
`{type: user, user_id}` (the user's email), `{type: rbac_group, rbac_group_id}`
(a group name as the IdP sends it) or `{type: organization}`; `amount` and
`period_to_date_spend` are US cents as decimal strings. An rbac_group limit
applies to each member's own spend unless `pooled: true`, in which case the
members share one budget. Create is an upsert by scope + period.
"""

from __future__ import annotations

import re
import secrets
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Request, Response

from common.admin import api
from common.core import periods
from common.core.errors import GatewayError
from common.db import pool
from common.http import json_response
from common.spend import caps, pricing, store
from common.spend.store import LimitRecord

BASE = "/v1/organizations/spend_limits"
SCOPES = ("user", "rbac_group", "organization")
MAX_CENTS = Decimal(10) ** 11  # one billion dollars: anything above is a typo
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _new_id() -> str:
    return "splim_" + secrets.token_hex(12)


def _cap_key(scope_type: str, scope_id: str) -> str:
    if scope_type == "user":
        return caps.user_key(scope_id)
    if scope_type == "rbac_group":
        return caps.group_key(scope_id)
    return caps.ORG_KEY


def _scope(scope_type: str, scope_id: str) -> dict[str, Any]:
    if scope_type == "user":
        return {"type": "user", "user_id": scope_id}
    if scope_type == "rbac_group":
        return {"type": "rbac_group", "rbac_group_id": scope_id}
    return {"type": "organization"}


def _render(rows: list[LimitRecord]) -> list[dict[str, Any]]:
    """API objects for rows, with each limit's period-to-date spend (one query for all)."""
    if not rows:
        return []
    day = periods.today()
    spend = store.period_spend(
        pool.get(),
        [_cap_key(r.scope_type, r.scope_id) for r in rows],
        [periods.start(r.period, day) for r in rows],
        day,
    )
    out = []
    for row, (spent, _held) in zip(rows, spend, strict=True):
        out.append(
            {
                "id": row.id,
                "type": "spend_limit",
                "scope": _scope(row.scope_type, row.scope_id),
                "period": row.period,
                "amount": pricing.cents_string(row.amount_micros),
                "currency": row.currency,
                "pooled": row.pooled,
                "period_to_date_spend": pricing.cents_string(spent),
                "resets_at": periods.reset_at(row.period, day).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "created_at": api.iso(row.created_at),
                "updated_at": api.iso(row.updated_at),
            }
        )
    return out


def _snapshot(row: LimitRecord | None) -> dict[str, Any] | None:
    """A row as the audit log keeps it (no live spend)."""
    if row is None:
        return None
    return {
        "id": row.id,
        "scope": _scope(row.scope_type, row.scope_id),
        "period": row.period,
        "amount": pricing.cents_string(row.amount_micros),
        "pooled": row.pooled,
    }


def _require(limit_id: str) -> LimitRecord:
    row = store.limit_by_id(pool.get(), limit_id)
    if row is None:
        raise GatewayError(404, f"No spend limit with id {limit_id!r}.", "not_found_error")
    return row


# --- validation --------------------------------------------------------------------------


def parse_amount(value: Any, field: str = "amount") -> int:
    """Cents (a decimal string, or an integer) -> micro-dollars."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise api.invalid(field, 'expected US cents as a decimal string, e.g. "5000" for $50.00')
    try:
        cents = Decimal(str(value).strip())
    except InvalidOperation:
        raise api.invalid(field, f"expected US cents as a decimal string, got {str(value)[:40]!r}") from None
    if not cents.is_finite() or cents < 0:
        raise api.invalid(field, "expected a non-negative amount of cents")
    if cents > MAX_CENTS:
        raise api.invalid(field, f"at most {MAX_CENTS} cents")
    micros = cents * 10_000
    if micros != micros.to_integral_value():
        raise api.invalid(field, "at most 4 decimal places of a cent (one micro-dollar)")
    return int(micros)


def _parse_scope(value: Any) -> tuple[str, str]:
    if not isinstance(value, dict):
        raise api.invalid("scope", 'expected an object such as {"type": "user", "user_id": "a@example.com"}')
    kind = value.get("type")
    if kind not in SCOPES:
        raise api.invalid("scope.type", f"expected one of {', '.join(SCOPES)}, got {str(kind)[:40]!r}")
    if kind == "organization":
        extra = set(value) - {"type"}
        if extra:
            raise api.invalid(f"scope.{sorted(extra)[0]}", "not allowed for an organization scope")
        return "organization", ""
    field = "user_id" if kind == "user" else "rbac_group_id"
    ident = value.get(field)
    if not isinstance(ident, str) or not ident.strip():
        raise api.invalid(f"scope.{field}", "required, a non-empty string")
    ident = ident.strip()
    if len(ident) > 320:
        raise api.invalid(f"scope.{field}", "at most 320 characters")
    extra = set(value) - {"type", field}
    if extra:
        raise api.invalid(f"scope.{sorted(extra)[0]}", f"unknown field for a {kind} scope")
    if kind == "user":
        if not _EMAIL.match(ident):
            raise api.invalid("scope.user_id", f"expected the user's email address, got {ident[:40]!r}")
        return "user", ident.lower()
    return "rbac_group", ident.lower()


def _parse_period(value: Any) -> str:
    if value not in periods.PERIODS:
        raise api.invalid("period", f"expected one of {', '.join(periods.PERIODS)}, got {str(value)[:40]!r}")
    return str(value)


def _parse_currency(body: dict[str, Any]) -> None:
    if "currency" in body and body["currency"] != "USD":
        raise api.invalid("currency", "only USD is supported")


def _parse_pooled(body: dict[str, Any], scope_type: str) -> bool:
    pooled = body.get("pooled", False)
    if not isinstance(pooled, bool):
        raise api.invalid("pooled", "expected true or false")
    if pooled and scope_type != "rbac_group":
        raise api.invalid("pooled", "only an rbac_group limit can be pooled")
    return pooled


_CREATE_FIELDS = {"scope", "period", "amount", "currency", "pooled"}


def _unknown(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise api.invalid(extra[0], f"unknown field; known fields: {', '.join(sorted(allowed))}")


# --- handlers ----------------------------------------------------------------------------


def list_or_create(request: Request) -> Response:
    if request.method == "POST":
        return create(request)
    api.caller(request, "read")
    page = api.page_args(request, default_limit=20, max_limit=1000)
    scope_type = api.choice_arg(request, "scope_type", SCOPES)
    db = pool.get()
    backwards = page.before_id is not None
    cursor = page.before_id or page.after_id
    seq = None
    if cursor:
        seq = store.limit_seq(db, cursor)
        if seq is None:
            raise api.invalid("before_id" if backwards else "after_id", f"no spend limit has the id {cursor[:60]!r}")
    rows, has_more = store.list_limits(
        db,
        scope_type=scope_type,
        after_seq=None if backwards else seq,
        before_seq=seq if backwards else None,
        limit=page.limit,
    )
    return json_response(api.list_envelope(_render(rows), has_more, backwards))


def create(request: Request) -> Response:
    who = api.caller(request, "write")
    obj, created = upsert(who, api.body(request))
    return json_response(obj, status=201 if created else 200)


def upsert(who: api.Caller, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create or update the limit of a scope + period from an API body: (the limit, created). Validated, audited."""
    _unknown(body, _CREATE_FIELDS)
    scope_type, scope_id = _parse_scope(body.get("scope"))
    period = _parse_period(body.get("period"))
    if "amount" not in body:
        raise api.invalid("amount", 'required: US cents as a decimal string, e.g. "5000" for $50.00')
    amount = parse_amount(body["amount"])
    _parse_currency(body)
    pooled = _parse_pooled(body, scope_type)
    db = pool.get()
    before = store.limit_by_scope(db, scope_type, scope_id, period)
    row, created = store.upsert_limit(db, _new_id(), scope_type, scope_id, period, amount, pooled)
    caps.invalidate()
    who.audit("spend_limit.create" if created else "spend_limit.update", row.id, _snapshot(before), _snapshot(row))
    return _render([row])[0], created


def get(limit_id: str) -> dict[str, Any]:
    """One limit as the API shows it, or 404."""
    return _render([_require(limit_id)])[0]


def listing(scope_type: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """(one page of limits in creation order, how many there are in all) for the console."""
    rows, total = store.limits_page(pool.get(), scope_type=scope_type, limit=limit, offset=offset)
    return _render(rows), total


def item(request: Request) -> Response:
    limit_id = api.no_extra_segments(request, BASE)
    if request.method == "GET":
        api.caller(request, "read")
        return json_response(get(limit_id))
    if request.method == "DELETE":
        return delete(request, limit_id)
    return update(request, limit_id)


def update(request: Request, limit_id: str) -> Response:
    who = api.caller(request, "write")
    return json_response(change(who, limit_id, api.body(request)))


def change(who: api.Caller, limit_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Update one limit's amount / pooled from an API body. Validated, audited."""
    _unknown(body, _CREATE_FIELDS)
    before = _require(limit_id)
    if "scope" in body and _parse_scope(body["scope"]) != (before.scope_type, before.scope_id):
        raise api.invalid("scope", "cannot change; delete this limit and create one for the other scope")
    if "period" in body and _parse_period(body["period"]) != before.period:
        raise api.invalid("period", "cannot change; delete this limit and create one for the other period")
    _parse_currency(body)
    amount = parse_amount(body["amount"]) if "amount" in body else before.amount_micros
    pooled = _parse_pooled(body, before.scope_type) if "pooled" in body else before.pooled
    row = store.update_limit(pool.get(), limit_id, amount, pooled)
    if row is None:
        raise GatewayError(404, f"No spend limit with id {limit_id!r}.", "not_found_error")
    caps.invalidate()
    who.audit("spend_limit.update", limit_id, _snapshot(before), _snapshot(row))
    return _render([row])[0]


def delete(request: Request, limit_id: str) -> Response:
    who = api.caller(request, "write")
    return json_response(remove(who, limit_id))


def remove(who: api.Caller, limit_id: str) -> dict[str, Any]:
    """Delete one limit (404 when unknown). Audited."""
    row = store.delete_limit(pool.get(), limit_id)
    if row is None:
        raise GatewayError(404, f"No spend limit with id {limit_id!r}.", "not_found_error")
    caps.invalidate()
    who.audit("spend_limit.delete", limit_id, _snapshot(row), None)
    return {"id": limit_id, "type": "spend_limit_deleted"}
