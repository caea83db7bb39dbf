"""`python -m gatewayctl ...`: spend limits, usage, sessions, policy and audit over the admin API.

The gateway's origin comes from `--url` or $GATEWAY_URL (default
http://127.0.0.1:8080), the admin key from `--key` or $GATEWAY_ADMIN_KEY (an
admin-group session token works too). Dollars on the command line; the API
speaks cents. Examples:

    gatewayctl limits set --user a@x.com --daily 50
    gatewayctl limits set --group eng --monthly 2000 --pooled
    gatewayctl limits list
    gatewayctl usage --group eng --month
    gatewayctl sessions revoke a@x.com
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import requests


class CtlError(Exception):
    pass


class Client:
    def __init__(self, url: str, key: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"User-Agent": "gatewayctl/1"}
        if key:
            self.headers["x-api-key" if key.count(".") != 2 else "Authorization"] = (
                key if key.count(".") != 2 else f"Bearer {key}"
            )
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            response = requests.request(
                method, self.url + path, headers=self.headers, json=body, params=params, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise CtlError(f"cannot reach {self.url}: {exc}") from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            message = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
            raise CtlError(f"HTTP {response.status_code}: {message or response.text[:300]}")
        return payload


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [headers, *rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        out = []
        for i, cell in enumerate(row):
            text = str(cell)
            numeric = text.replace("$", "").replace(".", "").replace("%", "").replace(",", "").isdigit()
            out.append(text.rjust(widths[i]) if numeric and i else text.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def dollars(cents: str | int | None) -> str:
    if cents is None:
        return "-"
    value = Decimal(str(cents)) / 100
    return f"${value:,.2f}"


def to_cents(text: str) -> str:
    try:
        value = Decimal(text.lstrip("$"))
    except InvalidOperation:
        raise CtlError(f"not an amount of dollars: {text!r}") from None
    if value < 0:
        raise CtlError("amounts cannot be negative")
    cents = (value * 100).normalize()
    return format(cents, "f")


def _scope(args: argparse.Namespace) -> dict[str, Any]:
    if args.user:
        return {"type": "user", "user_id": args.user}
    if args.group:
        return {"type": "rbac_group", "rbac_group_id": args.group}
    return {"type": "organization"}


def _scope_text(scope: dict[str, Any]) -> str:
    if scope["type"] == "user":
        return f"user {scope['user_id']}"
    if scope["type"] == "rbac_group":
        return f"group {scope['rbac_group_id']}"
    return "organization"


def _limit_rows(items: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for item in items:
        amount = Decimal(item["amount"])
        spent = Decimal(item["period_to_date_spend"])
        used = f"{(spent / amount * 100):.0f}%" if amount else "-"
        scope = _scope_text(item["scope"]) + (" (pooled)" if item.get("pooled") else "")
        rows.append(
            [
                item["id"],
                scope,
                item["period"],
                dollars(item["amount"]),
                dollars(item["period_to_date_spend"]),
                used,
                (item.get("resets_at") or "")[:16].replace("T", " "),
            ]
        )
    return rows


LIMIT_HEADERS = ["ID", "SCOPE", "PERIOD", "LIMIT", "SPENT", "USED", "RESETS (UTC)"]


def cmd_limits_set(client: Client, args: argparse.Namespace) -> Any:
    periods = [(p, getattr(args, p)) for p in ("daily", "weekly", "monthly") if getattr(args, p) is not None]
    if not periods:
        raise CtlError("give at least one of --daily, --weekly, --monthly (dollars)")
    results = []
    for period, amount in periods:
        body: dict[str, Any] = {"scope": _scope(args), "period": period, "amount": to_cents(amount)}
        if args.pooled:
            body["pooled"] = True
        results.append(client.call("POST", "/v1/organizations/spend_limits", body))
    return results if args.json else table(_limit_rows(results), LIMIT_HEADERS)


def cmd_limits_list(client: Client, args: argparse.Namespace) -> Any:
    params: dict[str, Any] = {"limit": 1000}
    if args.scope:
        params["scope_type"] = {"user": "user", "group": "rbac_group", "org": "organization"}[args.scope]
    items: list[dict[str, Any]] = []
    while True:
        page = client.call("GET", "/v1/organizations/spend_limits", params=params)
        items.extend(page["data"])
        if not page.get("has_more"):
            break
        params["after_id"] = page["last_id"]
    if args.json:
        return items
    return table(_limit_rows(items), LIMIT_HEADERS) if items else "no spend limits"


def cmd_limits_delete(client: Client, args: argparse.Namespace) -> Any:
    result = client.call("DELETE", f"/v1/organizations/spend_limits/{args.id}")
    return result if args.json else f"deleted {result['id']}"


def _range(args: argparse.Namespace) -> tuple[date, date]:
    today = datetime.now(UTC).date()
    if args.since:
        start = date.fromisoformat(args.since)
        end = date.fromisoformat(args.until) if args.until else today + timedelta(days=1)
    elif args.week:
        start, end = today - timedelta(days=today.weekday()), today + timedelta(days=1)
    elif args.day:
        start, end = today, today + timedelta(days=1)
    else:  # --month, the default
        start, end = today.replace(day=1), today + timedelta(days=1)
    return start, end


def cmd_usage(client: Client, args: argparse.Namespace) -> Any:
    start, end = _range(args)
    by = args.by or ("user" if not args.user else "model")
    params: dict[str, Any] = {"starting_at": start.isoformat(), "ending_at": end.isoformat(), "group_by": by}
    if args.user:
        params["user"] = args.user
    if args.group:
        params["group"] = args.group
    report = client.call("GET", "/v1/organizations/analytics/cost", params=params)
    if args.json:
        return report
    dims = report["group_by"]
    rows = [
        [
            *(str(r.get(d) if r.get(d) is not None else "(none)") for d in dims),
            f"{r['requests']:,}",
            f"{r['input_tokens'] + r['cache_read_input_tokens'] + r['cache_creation_input_tokens']:,}",
            f"{r['output_tokens']:,}",
            dollars(r["amount"]),
        ]
        for r in sorted(report["data"], key=lambda r: Decimal(r["amount"]), reverse=True)
    ]
    title = f"spend {start} .. {end - timedelta(days=1)}" + (f", group {args.group}" if args.group else "")
    title += f", user {args.user}" if args.user else ""
    body = table(rows, [*(d.upper() for d in dims), "REQUESTS", "INPUT TOK", "OUTPUT TOK", "COST"])
    return f"{title}\n{body}\ntotal {dollars(report['total_amount'])}"


def cmd_sessions_revoke(client: Client, args: argparse.Namespace) -> Any:
    result = client.call("POST", "/v1/organizations/sessions/revoke", {"email": args.email})
    return result if args.json else f"revoked {result.get('revoked', 0)} session(s) of {args.email}"


def cmd_sessions_list(client: Client, args: argparse.Namespace) -> Any:
    params = {"email": args.email} if args.email else None
    page = client.call("GET", "/v1/organizations/sessions", params=params)
    if args.json:
        return page
    rows = [
        [
            s.get("id", ""),
            s.get("email", ""),
            ",".join(s.get("groups") or []),
            (s.get("created_at") or "")[:16],
            (s.get("expires_at") or "")[:16],
        ]
        for s in page.get("data", [])
    ]
    return table(rows, ["ID", "EMAIL", "GROUPS", "CREATED", "EXPIRES"]) if rows else "no active sessions"


def cmd_explain(client: Client, args: argparse.Namespace) -> Any:
    result = client.call(
        "GET", "/v1/organizations/policy/explain", params={"email": args.email, "groups": args.groups or ""}
    )
    if args.json:
        return result
    chosen = result.get("policy")
    allowed = result.get("models") or {}
    allowed = allowed.get("allowed") or [] if isinstance(allowed, dict) else allowed
    lines = [
        f"user     {result['email']}  groups: {', '.join(result['groups']) or '(none)'}",
        f"policy   {chosen or '(none applies)'}",
        f"models   {', '.join(allowed) or '(none)'}",
    ]
    caps = result["spend"]["caps"]
    rows = [
        [
            c["scope"] + (f" {c['scope_id']}" if c.get("scope_id") else "") + (" (pooled)" if c["pooled"] else ""),
            c["period"],
            dollars(c["amount"]),
            dollars(c["period_to_date_spend"]),
            "yes" if c["blocked"] else "no",
        ]
        for c in caps
    ]
    lines.append(table(rows, ["CAP", "PERIOD", "LIMIT", "SPENT", "BLOCKED"]) if rows else "spend    no caps apply")
    return "\n".join(lines)


def cmd_audit(client: Client, args: argparse.Namespace) -> Any:
    page = client.call("GET", "/v1/organizations/audit_log", params={"limit": args.limit})
    if args.json:
        return page
    rows = [
        [e["created_at"][:19].replace("T", " "), e["actor"], e["action"], e.get("target") or ""] for e in page["data"]
    ]
    return table(rows, ["TIME (UTC)", "ACTOR", "ACTION", "TARGET"]) if rows else "no audit events"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatewayctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"))
    parser.add_argument(
        "--key", default=os.environ.get("GATEWAY_ADMIN_KEY"), help="admin key (default $GATEWAY_ADMIN_KEY)"
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    sub = parser.add_subparsers(dest="command", required=True)

    limits = sub.add_parser("limits", help="spend limits").add_subparsers(dest="action", required=True)
    p = limits.add_parser("set", help="create or update limits (dollars)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user's email")
    who.add_argument("--group", help="a group: each member's own cap, or --pooled for one shared budget")
    who.add_argument("--org", action="store_true", help="the whole organization")
    p.add_argument("--daily")
    p.add_argument("--weekly")
    p.add_argument("--monthly")
    p.add_argument("--pooled", action="store_true")
    p.set_defaults(func=cmd_limits_set)
    p = limits.add_parser("list", help="every limit with its period-to-date spend")
    p.add_argument("--scope", choices=["user", "group", "org"])
    p.set_defaults(func=cmd_limits_list)
    p = limits.add_parser("delete", help="delete a limit by id")
    p.add_argument("id")
    p.set_defaults(func=cmd_limits_delete)

    p = sub.add_parser("usage", help="spend over a period (default: this month, by user)")
    p.add_argument("--user")
    p.add_argument("--group")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--day", action="store_true")
    when.add_argument("--week", action="store_true")
    when.add_argument("--month", action="store_true")
    when.add_argument("--since", help="YYYY-MM-DD")
    p.add_argument("--until", help="YYYY-MM-DD (exclusive)")
    p.add_argument("--by", help="user, group, model, day (comma-separated)")
    p.set_defaults(func=cmd_usage)

    sessions = sub.add_parser("sessions", help="sign-in sessions").add_subparsers(dest="action", required=True)
    p = sessions.add_parser("revoke", help="revoke every session of a user at once")
    p.add_argument("email")
    p.set_defaults(func=cmd_sessions_revoke)
    p = sessions.add_parser("list", help="active sessions")
    p.add_argument("--email")
    p.set_defaults(func=cmd_sessions_list)

    p = sub.add_parser("explain", help="a user's effective policy and spend caps")
    p.add_argument("email")
    p.add_argument("--groups", help="comma-separated")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("audit", help="recent admin audit events")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = Client(args.url, args.key)
    try:
        out = args.func(client, args)
    except CtlError as exc:
        print(f"gatewayctl: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2) if not isinstance(out, str) else out)
    return 0
