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
from common.db import pool as store
from common.http.app import json_response
from common.spend import ledger, pricing

BASE = "/v1/organizations/spend_limits"
SCOPES = ("user", "rbac_group", "organization")
MAX_CENTS = Decimal(10) ** 11  # one billion dollars: anything above is a typo
_COLUMNS = "id, scope_type, scope_id, period, amount_micros, pooled, currency, created_at, updated_at, seq"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _new_id() -> str:
    return "splim_" + secrets.token_hex(12)


def _cap_key(scope_type: str, scope_id: str) -> str:
    if scope_type == "user":
        return ledger.user_key(scope_id)
    if scope_type == "rbac_group":
        return ledger.group_key(scope_id)
    return ledger.ORG_KEY


def _scope(scope_type: str, scope_id: str) -> dict[str, Any]:
    if scope_type == "user":
        return {"type": "user", "user_id": scope_id}
    if scope_type == "rbac_group":
        return {"type": "rbac_group", "rbac_group_id": scope_id}
    return {"type": "organization"}


def _render(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """API objects for rows, with each limit's period-to-date spend (one query for all)."""
    if not rows:
        return []
    day = periods.today()
    spend = ledger.period_spend(
        store.get(),
        [_cap_key(r[1], r[2]) for r in rows],
        [periods.start(r[3], day) for r in rows],
        day,
    )
    out = []
    for row, (spent, _held) in zip(rows, spend, strict=True):
        out.append(
            {
                "id": row[0],
                "type": "spend_limit",
                "scope": _scope(row[1], row[2]),
                "period": row[3],
                "amount": pricing.cents_string(int(row[4])),
                "currency": row[6],
                "pooled": bool(row[5]),
                "period_to_date_spend": pricing.cents_string(spent),
                "resets_at": periods.reset_at(row[3], day).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "created_at": api.iso(row[7]),
                "updated_at": api.iso(row[8]),
            }
        )
    return out


def _snapshot(row: tuple[Any, ...] | None) -> dict[str, Any] | None:
    """A row as the audit log keeps it (no live spend)."""
    if row is None:
        return None
    return {
        "id": row[0],
        "scope": _scope(row[1], row[2]),
        "period": row[3],
        "amount": pricing.cents_string(int(row[4])),
        "pooled": bool(row[5]),
    }


def _fetch(limit_id: str) -> tuple[Any, ...] | None:
    rows = store.get().execute(f"SELECT {_COLUMNS} FROM spend_limits WHERE id = %s", (limit_id,))  # noqa: S608
    return rows[0] if rows else None


def _require(limit_id: str) -> tuple[Any, ...]:
    row = _fetch(limit_id)
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
    where = ["TRUE"]
    args: list[Any] = []
    if scope_type:
        where.append("scope_type = %s")
        args.append(scope_type)
    backwards = page.before_id is not None
    cursor = page.before_id or page.after_id
    if cursor:
        found = store.get().execute("SELECT seq FROM spend_limits WHERE id = %s", (cursor,))
        if not found:
            raise api.invalid("before_id" if backwards else "after_id", f"no spend limit has the id {cursor[:60]!r}")
        where.append("seq < %s" if backwards else "seq > %s")
        args.append(found[0][0])
    rows, has_more = api.fetch_page(f"SELECT {_COLUMNS} FROM spend_limits", where, args, "seq", False, page)  # noqa: S608
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
    db = store.get()
    before = db.execute(
        f"SELECT {_COLUMNS} FROM spend_limits WHERE scope_type = %s AND scope_id = %s AND period = %s",  # noqa: S608
        (scope_type, scope_id, period),
    )
    rows = db.execute(
        "INSERT INTO spend_limits (id, scope_type, scope_id, period, amount_micros, pooled)"  # noqa: S608
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (scope_type, scope_id, period) DO UPDATE SET amount_micros = EXCLUDED.amount_micros,"
        " pooled = EXCLUDED.pooled, updated_at = now()"
        f" RETURNING {_COLUMNS}, (xmax = 0)",
        (_new_id(), scope_type, scope_id, period, amount, pooled),
    )
    row = rows[0][:-1]
    created = bool(rows[0][-1])
    ledger.invalidate_limits()
    who.audit(
        "spend_limit.create" if created else "spend_limit.update",
        row[0],
        _snapshot(before[0]) if before else None,
        _snapshot(row),
    )
    return _render([row])[0], created


def get(limit_id: str) -> dict[str, Any]:
    """One limit as the API shows it, or 404."""
    return _render([_require(limit_id)])[0]


def listing(scope_type: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """(one page of limits in creation order, how many there are in all) for the console."""
    where, args = ("scope_type = %s", [scope_type]) if scope_type else ("TRUE", [])
    db = store.get()
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM spend_limits WHERE {where} ORDER BY seq LIMIT %s OFFSET %s",  # noqa: S608
        (*args, limit, offset),
    )
    total = db.execute(f"SELECT count(*) FROM spend_limits WHERE {where}", tuple(args))  # noqa: S608
    return _render(rows), int(total[0][0])


def item(request: Request) -> Response:
    limit_id = api.no_extra_segments(request, BASE)
    if request.method == "GET":
        api.caller(request, "read")
        return json_response(_render([_require(limit_id)])[0])
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
    if "scope" in body and _parse_scope(body["scope"]) != (before[1], before[2]):
        raise api.invalid("scope", "cannot change; delete this limit and create one for the other scope")
    if "period" in body and _parse_period(body["period"]) != before[3]:
        raise api.invalid("period", "cannot change; delete this limit and create one for the other period")
    _parse_currency(body)
    amount = parse_amount(body["amount"]) if "amount" in body else int(before[4])
    pooled = _parse_pooled(body, before[1]) if "pooled" in body else bool(before[5])
    rows = store.get().execute(
        "UPDATE spend_limits SET amount_micros = %s, pooled = %s, updated_at = now() WHERE id = %s"  # noqa: S608
        f" RETURNING {_COLUMNS}",
        (amount, pooled, limit_id),
    )
    if not rows:
        raise GatewayError(404, f"No spend limit with id {limit_id!r}.", "not_found_error")
    ledger.invalidate_limits()
    who.audit("spend_limit.update", limit_id, _snapshot(before), _snapshot(rows[0]))
    return _render([rows[0]])[0]


def delete(request: Request, limit_id: str) -> Response:
    who = api.caller(request, "write")
    return json_response(remove(who, limit_id))


def remove(who: api.Caller, limit_id: str) -> dict[str, Any]:
    """Delete one limit (404 when unknown). Audited."""
    rows = store.get().execute(f"DELETE FROM spend_limits WHERE id = %s RETURNING {_COLUMNS}", (limit_id,))  # noqa: S608
    if not rows:
        raise GatewayError(404, f"No spend limit with id {limit_id!r}.", "not_found_error")
    ledger.invalidate_limits()
    who.audit("spend_limit.delete", limit_id, _snapshot(rows[0]), None)
    return {"id": limit_id, "type": "spend_limit_deleted"}
