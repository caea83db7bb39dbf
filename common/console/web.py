"""The console's web plumbing: sign-in through the company IdP, the session cookie, CSRF, CSP, templates.

Sign-in is its own authorization code + PKCE round trip through the configured
OIDC provider (the same authlib client as the device page): `GET /admin/signin`
sends the browser to the IdP, `GET /admin/callback` verifies the ID token,
applies the sign-in gates and the console's role: members of
`admin.admin_groups` may change things, members of `admin.viewer_groups` may
look. The role is re-derived from the groups on every request, so removing a
group from gateway.yaml takes effect at once.

The session is a sealed (AES-GCM) cookie: email, groups, a CSRF nonce, when it
began and when it was last used. It ends after `admin.console_session_minutes`
idle or `admin.console_session_max_hours` after sign-in. Cookies are
`HttpOnly`, `SameSite=Strict` (the OIDC state cookie `Lax`: the IdP's redirect
back is a cross-site navigation) and, on https, `Secure` with a `__Host-` name.
Every POST needs the CSRF token (HMAC of the session's nonce) and a same-origin
`Origin` (or `Sec-Fetch-Site: same-origin`); every page carries a CSP without
inline script or style.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import jinja2
from flask import Request, Response

from common import config
from common.admin import api
from common.admin import auth as admin_auth
from common.audit import records as audit
from common.auth import claims as identity_claims
from common.auth import crypto
from common.auth import oidc as idp
from common.config import Config
from common.core import logs
from common.core.errors import GatewayError
from common.http import clientip

HERE = Path(__file__).parent
SESSION_PURPOSE = b"console-session"
STATE_PURPOSE = b"console-oidc-state"
CSRF_PURPOSE = b"console-csrf"
STATE_TTL_SECONDS = 600
MAX_FORM_BYTES = 16 * 1024
BASE = "/admin"

Role = Literal["admin", "viewer"]


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at the console."""

    email: str
    groups: tuple[str, ...]
    role: Role
    nonce: str
    started: int

    @property
    def can_write(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a page handler gets: the config, the viewer, and the CSRF token for its forms."""

    cfg: Config
    viewer: Viewer
    csrf: str
    request: Request

    def refused(self, reason: str) -> None:
        _event(self.cfg, self.request, "console.refused", self.viewer.email, self.request.path, reason=reason)

    def caller(self) -> api.Caller:
        """The admin API's caller (its `audit()` writes the same audit rows the API writes)."""
        return api.Caller(
            self.cfg,
            self.viewer.email,
            clientip.client_ip(self.request, self.cfg),
            self.request.headers.get("User-Agent"),
        )


def _event(cfg: Config, request: Request, action: str, actor: str, target: str, **detail: Any) -> None:
    audit.record(
        action,
        actor=actor,
        target=target,
        client_ip=clientip.client_ip(request, cfg),
        user_agent=request.headers.get("User-Agent"),
        detail=detail or None,
    )


# --- cookies -------------------------------------------------------------------------------


def secure(cfg: Config) -> bool:
    return cfg.public_url.startswith("https://")


def cookie_name(cfg: Config, name: str) -> str:
    return f"__Host-{name}" if secure(cfg) else name


def _set_cookie(cfg: Config, response: Response, name: str, value: str, max_age: int, samesite: str) -> None:
    response.set_cookie(
        cookie_name(cfg, name), value, max_age=max_age, path="/", secure=secure(cfg), httponly=True, samesite=samesite
    )


def _clear_cookie(cfg: Config, response: Response, name: str, samesite: str) -> None:
    _set_cookie(cfg, response, name, "", 0, samesite)


# --- roles and the session -----------------------------------------------------------------


def role_of(cfg: Config, groups: tuple[str, ...] | list[str]) -> Role | None:
    """The console role of these groups: the admin API's access for the same groups (one rule for both)."""
    access = admin_auth.group_access(cfg, groups)
    return None if access is None else "admin" if access == "write" else "viewer"


def _session_cookie(cfg: Config, viewer: Viewer) -> str:
    payload = {
        "e": viewer.email,
        "g": list(viewer.groups),
        "c": viewer.nonce,
        "s": viewer.started,
        "t": int(time.time()),
    }
    return crypto.seal(cfg, json.dumps(payload), SESSION_PURPOSE)


def current_viewer(cfg: Config, request: Request) -> Viewer | None:
    """The signed-in viewer, or None (no cookie, tampered, timed out, or no longer in a console group)."""
    raw = request.cookies.get(cookie_name(cfg, "gw_console"), "")
    if not raw or len(raw) > 8192 or cfg.admin is None:
        return None
    opened = crypto.unseal(cfg, raw, SESSION_PURPOSE)
    if opened is None:
        return None
    try:
        data = json.loads(opened)
        email, groups, nonce = str(data["e"]), tuple(str(g) for g in data["g"]), str(data["c"])
        started, seen = int(data["s"]), int(data["t"])
    except (ValueError, KeyError, TypeError):
        return None
    now = time.time()
    if now - seen > cfg.admin.console_session_minutes * 60:
        return None
    if now - started > cfg.admin.console_session_max_hours * 3600:
        return None
    role = role_of(cfg, groups)
    if role is None:
        return None
    return Viewer(email, groups, role, nonce, started)


def csrf_token(cfg: Config, viewer: Viewer) -> str:
    return crypto.sign(cfg, viewer.nonce, CSRF_PURPOSE)


def same_origin(cfg: Config, request: Request) -> bool:
    """The POST comes from our own pages: `Origin` is ours, or (an opaque `null` origin or none)
    the browser's own `Sec-Fetch-Site: same-origin`, which page script cannot set."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null":
        return origin.rstrip("/") == cfg.public_url
    return request.headers.get("Sec-Fetch-Site") == "same-origin"


# --- rendering -----------------------------------------------------------------------------


@cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["usd"] = usd
    env.filters["quote"] = lambda value: quote(str(value), safe="")
    return env


def usd(micros: int | None) -> str:
    """Micro-dollars as dollars with cents (exact: integer arithmetic, rounded half up to the cent)."""
    if micros is None:
        return "—"
    sign = "-" if micros < 0 else ""
    cents = (abs(int(micros)) + 5_000) // 10_000
    return f"{sign}${cents // 100:,}.{cents % 100:02d}"


def security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on form posts.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return response


def render(template: str, status: int = 200, ctx: Ctx | None = None, **values: Any) -> Response:
    page = (
        _templates()
        .get_template(template)
        .render(viewer=ctx.viewer if ctx else None, csrf=ctx.csrf if ctx else "", base=BASE, **values)
    )
    return security_headers(Response(page, status=status, content_type="text/html; charset=utf-8"))


def message(title: str, text: str, status: int, ctx: Ctx | None = None) -> Response:
    return render("message.html", status, ctx, title=title, text=text)


# --- page decorator ------------------------------------------------------------------------

Page = Callable[[Ctx], Response]


def page(write: bool = False) -> Callable[[Page], Callable[[Request], Response]]:
    """Wrap a console handler: session (or sign-in redirect), role, CSRF + origin on POST, sliding timeout."""

    def wrap(handler: Page) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            cfg = config.current()
            if cfg.admin is None:
                return message("Console disabled", "gateway.yaml has no `admin` section.", 501)
            viewer = current_viewer(cfg, request)
            if viewer is None:
                if request.method == "GET":
                    target = request.full_path.rstrip("?") if request.path.startswith(BASE) else BASE
                    response = Response(status=303, headers={"Location": f"{BASE}/signin?next={quote(target)}"})
                    return security_headers(response)
                return message("Signed out", "Your console session has ended; sign in again.", 401)
            ctx = Ctx(cfg, viewer, csrf_token(cfg, viewer), request)
            if request.method == "POST":
                refusal = _check_post(ctx, write)
                if refusal is not None:
                    return refusal
            try:
                response = handler(ctx)
            except GatewayError as exc:
                response = message("Not possible", exc.message, exc.status, ctx)
            if "Clear-Site-Data" in response.headers:  # signed out
                _clear_cookie(cfg, response, "gw_console", "Strict")
            else:  # the idle timeout slides with every page
                minutes = cfg.admin.console_session_minutes
                _set_cookie(cfg, response, "gw_console", _session_cookie(cfg, viewer), minutes * 60, "Strict")
            return response

        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__
        return run

    return wrap


def _check_post(ctx: Ctx, write: bool) -> Response | None:
    request, cfg = ctx.request, ctx.cfg
    if (request.content_length or 0) > MAX_FORM_BYTES:
        return message("Request too large", "The form was too large.", 413, ctx)
    if not same_origin(cfg, request):
        ctx.refused("cross_origin")
        return message("Request refused", "This form must be sent from the console's own pages.", 403, ctx)
    sent = request.form.get("csrf_token", "")
    if not hmac.compare_digest(sent.encode(), ctx.csrf.encode()):
        ctx.refused("csrf")
        return message("Request refused", "The page expired; reload it and try again.", 403, ctx)
    if write and not ctx.viewer.can_write:
        ctx.refused("read_only")
        return message(
            "Read-only access",
            f"{ctx.viewer.email} may look but not change things (a member of admin.viewer_groups, "
            "not admin.admin_groups).",
            403,
            ctx,
        )
    return None


# --- sign-in -------------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    if not value or not value.startswith(BASE) or value.startswith("//") or "\\" in value:
        return BASE
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return BASE
    return value


def signin(request: Request) -> Response:
    cfg = config.current()
    if cfg.admin is None:
        return message("Console disabled", "gateway.yaml has no `admin` section.", 501)
    state, nonce, verifier = crypto.random_token(24), crypto.random_token(24), crypto.random_token(48)
    try:
        url = idp.authorization_url(cfg, f"{cfg.public_url}{BASE}/callback", state, nonce, verifier)
    except idp.IdpError as exc:
        logs.error("cannot reach the IdP", error=str(exc))
        return message("Sign-in unavailable", "The identity provider cannot be reached; try again shortly.", 502)
    sealed = crypto.seal(
        cfg,
        json.dumps(
            {
                "s": state,
                "n": nonce,
                "v": verifier,
                "next": _safe_next(request.args.get("next")),
                "exp": int(time.time()) + STATE_TTL_SECONDS,
            }
        ),
        STATE_PURPOSE,
    )
    response = security_headers(Response(status=303, headers={"Location": url}))
    _set_cookie(cfg, response, "gw_console_oidc", sealed, STATE_TTL_SECONDS, "Lax")
    return response


def callback(request: Request) -> Response:
    cfg = config.current()
    raw = request.cookies.get(cookie_name(cfg, "gw_console_oidc"), "")
    opened = crypto.unseal(cfg, raw, STATE_PURPOSE) if raw and len(raw) < 8192 else None
    try:
        state = json.loads(opened) if opened else None
    except ValueError:
        state = None
    if (
        not isinstance(state, dict)
        or state.get("exp", 0) < time.time()
        or not hmac.compare_digest(str(state.get("s")).encode(), request.args.get("state", "").encode())
    ):
        _event(cfg, request, "console.signin_refused", "anonymous", BASE, reason="bad_state")
        return _done(cfg, message("Sign-in expired", "This sign-in link is stale; start again from /admin.", 400))
    if request.args.get("error") or not request.args.get("code"):
        return _done(cfg, message("Sign-in failed", "The identity provider did not sign you in.", 400))
    try:
        result = idp.exchange_code(
            cfg, request.args["code"], str(state["v"]), f"{cfg.public_url}{BASE}/callback", str(state["n"])
        )
        user = identity_claims.user_from_claims(cfg, result.claims)
    except idp.IdpError as exc:
        logs.warning("console OIDC sign-in failed", error=str(exc))
        return _done(cfg, message("Sign-in failed", "The identity provider's answer did not verify.", 502))
    except identity_claims.Refused as exc:
        _event(cfg, request, "console.signin_refused", "anonymous", BASE, reason="not_allowed", message=str(exc))
        return _done(cfg, message("Access not allowed", str(exc), 403))
    role = role_of(cfg, user.groups)
    if role is None:
        _event(cfg, request, "console.signin_refused", user.email, BASE, reason="not_in_console_group")
        return _done(
            cfg,
            message(
                "Access not allowed",
                f"{user.email} is in neither admin.admin_groups nor admin.viewer_groups; ask a gateway administrator.",
                403,
            ),
        )
    viewer = Viewer(user.email, tuple(user.groups), role, crypto.random_token(24), int(time.time()))
    _event(cfg, request, "console.signin", user.email, BASE, role=role, groups=list(user.groups))
    target = _safe_next(str(state.get("next") or BASE))
    # A 200 page that moves on by itself: a redirect straight from the IdP's cross-site navigation
    # would not carry the SameSite=Strict session cookie on its first request.
    response = render("signed_in.html", 200, None, target=target, email=user.email)
    response.headers["Referrer-Policy"] = "no-referrer"  # this URL carries the authorization code
    minutes = cfg.admin.console_session_minutes if cfg.admin else 0
    _set_cookie(cfg, response, "gw_console", _session_cookie(cfg, viewer), minutes * 60, "Strict")
    return _done(cfg, response)


def _done(cfg: Config, response: Response) -> Response:
    _clear_cookie(cfg, response, "gw_console_oidc", "Lax")
    return response


@page()
def signout(ctx: Ctx) -> Response:
    """POST /admin/signout: the session cookie is cleared (and the browser told to drop this origin's cookies)."""
    response = message("Signed out", "You have signed out of the console.", 200)
    response.headers["Clear-Site-Data"] = '"cookies"'
    return response


# --- static assets -------------------------------------------------------------------------

_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}


@cache
def _asset(name: str) -> bytes | None:
    path = HERE / "static" / name
    if "/" in name or name.startswith(".") or path.suffix not in _STATIC_TYPES or not path.is_file():
        return None
    return path.read_bytes()


def static(request: Request) -> Response:
    name = request.path.rsplit("/", 1)[-1]
    body = _asset(name)
    if body is None:
        return security_headers(Response("not found", status=404, content_type="text/plain"))
    response = Response(body, content_type=_STATIC_TYPES[Path(name).suffix])
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
