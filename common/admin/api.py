"""What the admin handlers share: auth + audit context, field errors, list pagination."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from flask import Request

from common import config
from common.admin import auth as admin_auth
from common.audit import records as audit
from common.config import Config
from common.core.errors import GatewayError
from common.db import pages
from common.db import pool as store
from common.http import clientip, read_json_body

T = TypeVar("T")
MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class Caller:
    cfg: Config
    actor: str
    client_ip: str | None
    user_agent: str | None

    def audit(self, action: str, target: str, before: Any, after: Any) -> None:
        audit.record(
            action,
            actor=self.actor,
            target=target,
            client_ip=self.client_ip,
            user_agent=self.user_agent,
            before=before,
            after=after,
        )


def caller(request: Request, need: admin_auth.Access) -> Caller:
    cfg = config.current()
    admin = admin_auth.authenticate(request, cfg, need)
    check_args(request)
    return Caller(cfg, admin.actor, clientip.client_ip(request, cfg), request.headers.get("User-Agent"))


def check_args(request: Request) -> None:
    """400 naming the first query parameter Postgres could not store (NUL, a lone surrogate)."""
    for name, value in request.args.items(multi=True):
        check_text(name, name)
        check_text(name, value)


def check_text(field: str, value: str) -> None:
    """Postgres text cannot hold NUL, and lone surrogates cannot be encoded: refuse both as 400."""
    if "\x00" in value:
        raise invalid(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(field, "must be valid Unicode text") from None


def _check_strings(value: Any, field: str) -> None:
    if isinstance(value, str):
        check_text(field, value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            check_text(field, str(key))
            _check_strings(inner, f"{field}.{key}" if field else str(key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            _check_strings(inner, f"{field}[{i}]")


def body(request: Request) -> dict[str, Any]:
    """The request's JSON object (400/411/413 as for every endpoint), with text Postgres can store."""
    data = read_json_body(request, MAX_BODY)
    _check_strings(data, "")
    return data


def invalid(field: str, message: str) -> GatewayError:
    """A 400 in Anthropic's envelope that names the field at fault."""
    return GatewayError(400, f"{field}: {message}", "invalid_request_error")


def int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, f"expected an integer between {low} and {high}, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise invalid(name, f"expected an integer between {low} and {high}, got {value}")
    return value


def choice_arg(request: Request, name: str, choices: Sequence[str]) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise invalid(name, f"expected one of {', '.join(choices)}, got {raw[:40]!r}")
    return raw


def date_arg(request: Request, name: str, default: date | None = None) -> date:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if default is None:
            raise invalid(name, "required; give a date (YYYY-MM-DD) or an RFC 3339 time")
        return default
    try:
        if len(raw) == 10:
            return _in_range(name, date.fromisoformat(raw))
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(name, f"expected a date (YYYY-MM-DD) or an RFC 3339 time, got {raw[:40]!r}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return _in_range(name, moment.date())


def _in_range(name: str, day: date) -> date:
    if not 2000 <= day.year <= 2200:
        raise invalid(name, "expected a date between the years 2000 and 2200")
    return day


def no_extra_segments(request: Request, base: str) -> str:
    """The one path segment after `base` (an object id), or 404."""
    rest = request.path.rstrip("/")[len(base) :].strip("/")
    if not rest or "/" in rest:
        raise GatewayError(404, f"No such endpoint: {request.method} {request.path}", "not_found_error")
    return rest


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    after_id: str | None
    before_id: str | None


def page_args(request: Request, default_limit: int = 20, max_limit: int = 1000) -> Page:
    after = request.args.get("after_id") or request.args.get("page") or None
    before = request.args.get("before_id") or None
    if after and before:
        raise invalid("before_id", "give after_id (or page) or before_id, not both")
    return Page(int_arg(request, "limit", default_limit, 1, max_limit), after, before)


def fetch_page(
    select: str, where: list[str], args: list[Any], order_by: str, descending: bool, page: Page
) -> tuple[list[tuple[Any, ...]], bool]:
    """One page of a keyset-paginated query and whether more follow (see `db.pages.keyset_page`)."""
    return pages.keyset_page(
        store.get(), select, where, args, order_by, descending, page.limit, backwards=page.before_id is not None
    )


def list_envelope(items: list[dict[str, Any]], has_more: bool, backwards: bool) -> dict[str, Any]:
    first = items[0]["id"] if items else None
    last = items[-1]["id"] if items else None
    return {
        "data": items,
        "has_more": has_more,
        "first_id": first,
        "last_id": last,
        "next_page": (first if backwards else last) if has_more and items else None,
    }


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def map_rows(rows: list[tuple[Any, ...]], convert: Callable[[tuple[Any, ...]], T]) -> list[T]:
    return [convert(r) for r in rows]
