"""The verification page at /device: the browser half of the device flow.

GET /device[?user_code=…]   the form: code pre-filled (never auto-submitted), Approve / Deny
POST /device                fields `user_code`, `csrf_token`, `action` (approve | deny)
                            approve -> 303 to the company IdP (PKCE S256, state, nonce)
GET /device/callback        the IdP's redirect: verify, apply the gates, mark the code approved
GET /device/style.css       the page's only stylesheet (the CSP allows no inline style or script)

Defences: a CSRF token (HMAC of a random cookie) on every POST plus an
`Origin` / `Sec-Fetch-Site` same-origin check; a strict CSP (no script at all),
`X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` (the callback URL
carries a code); cookies `HttpOnly`, `SameSite=Lax` (the IdP's redirect back
is a cross-site navigation), and `Secure` with a `__Host-` name on https.
The OIDC state, nonce and PKCE verifier travel in a sealed (AES-GCM) cookie,
so any instance can finish the flow. Wrong code entries are rate-limited per client IP.
"""

from __future__ import annotations

import hmac
import html
import json
import time
from urllib.parse import urlsplit

from flask import Request, Response

from common import config
from common.auth import claims, crypto, oidc, ratelimit, store
from common.auth.context import MAX_FORM_BYTES, Caller
from common.config import Config
from common.core import logs

CSRF_PURPOSE = b"device-csrf"
STATE_PURPOSE = b"device-oidc-state"
STATE_TTL_SECONDS = 600

STYLE = """
:root { color-scheme: light dark; --bg: #faf9f5; --fg: #1f1e1d; --muted: #6b6a68; --card: #ffffff;
  --line: #dedcd5; --accent: #c96442; --accent-fg: #ffffff; --bad: #b3261e; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #1f1e1d; --fg: #f0eee6; --muted: #a8a69e; --card: #2b2a27; --line: #44423d;
    --accent: #d97757; --accent-fg: #1f1e1d; --bad: #f2b8b5; }
}
* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
  background: var(--bg); color: var(--fg); font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { width: min(92vw, 28rem); padding: 2rem 1.5rem; background: var(--card); border: 1px solid var(--line);
  border-radius: 14px; }
h1 { font-size: 1.35rem; margin: 0 0 .75rem; }
p { margin: .5rem 0; color: var(--muted); }
p.error { color: var(--bad); }
label { display: block; font-weight: 600; margin: 1rem 0 .4rem; }
input[type=text] { width: 100%; font: 600 1.6rem/1.2 ui-monospace, "SF Mono", Menlo, monospace; letter-spacing: .15em;
  text-align: center; text-transform: uppercase; padding: .7rem; border-radius: 10px; border: 1px solid var(--line);
  background: var(--bg); color: var(--fg); }
.buttons { display: flex; gap: .75rem; margin-top: 1.25rem; flex-wrap: wrap; }
button { flex: 1 1 8rem; min-height: 3rem; font: 600 1rem system-ui, sans-serif; border-radius: 10px; cursor: pointer;
  border: 1px solid var(--line); background: transparent; color: var(--fg); }
button.primary { background: var(--accent); border-color: var(--accent); color: var(--accent-fg); }
code { font: 600 1.1rem ui-monospace, monospace; }
"""


def _secure(cfg: Config) -> bool:
    return cfg.public_url.startswith("https://")


def _cookie_name(cfg: Config, name: str) -> str:
    return f"__Host-{name}" if _secure(cfg) else name


def _set_cookie(cfg: Config, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        _cookie_name(cfg, name),
        value,
        max_age=max_age,
        path="/",
        secure=_secure(cfg),
        httponly=True,
        samesite="Lax",
    )


def _page(cfg: Config, title: str, body: str, status: int = 200) -> Response:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{html.escape(title)}</title>"
        '<link rel="stylesheet" href="/device/style.css"></head>'
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    # form-action must allow the redirect to the IdP; never fetch discovery just to render a page.
    origins = {_origin(cfg.oidc.issuer)}
    cached = oidc.provider(cfg).cached_metadata()
    if cached and isinstance(cached.get("authorization_endpoint"), str):
        origins.add(_origin(cached["authorization_endpoint"]))
    idp_origin = "".join(f" {o}" for o in sorted(origins))
    response = Response(document, status=status, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        f"form-action 'self'{idp_origin}; frame-ancestors 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def style(request: Request) -> Response:
    response = Response(STYLE, content_type="text/css; charset=utf-8")
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _form(cfg: Config, csrf: str, user_code: str, error: str | None = None) -> str:
    notice = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    login_notice = f"<p>{html.escape(cfg.login_notice)}</p>" if cfg.login_notice else ""
    return (
        "<p>Check that this code matches the one shown in your terminal, then approve to sign in"
        " with your company account.</p>"
        f"{notice}{login_notice}"
        '<form method="post" action="/device">'
        f'<input type="hidden" name="csrf_token" value="{html.escape(csrf)}">'
        '<label for="user_code">Code</label>'
        f'<input type="text" id="user_code" name="user_code" value="{html.escape(user_code)}"'
        ' autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="20" required>'
        '<div class="buttons">'
        '<button class="primary" type="submit" name="action" value="approve">Approve</button>'
        '<button type="submit" name="action" value="deny">Deny</button>'
        "</div></form>"
    )


def _csrf_pair(cfg: Config, request: Request) -> tuple[str, str, bool]:
    """(cookie value, form token, cookie is new)."""
    cookie = request.cookies.get(_cookie_name(cfg, "gw_csrf"))
    fresh = not cookie or len(cookie) > 100
    if fresh:
        cookie = crypto.random_token(24)
    assert cookie is not None
    return cookie, crypto.sign(cfg, cookie, CSRF_PURPOSE), fresh


def show(request: Request) -> Response:
    cfg = config.current()
    prefill = request.args.get("user_code", "")[:20]
    normalized = crypto.normalize_user_code(prefill)
    cookie, token, fresh = _csrf_pair(cfg, request)
    response = _page(
        cfg, "Sign in to Claude Code", _form(cfg, token, crypto.display_user_code(normalized) if normalized else "")
    )
    if fresh:
        _set_cookie(cfg, response, "gw_csrf", cookie, 3600)
    return response


def _printable(text: str) -> str:
    """`text` without control characters: a NUL would make Postgres refuse the audit row it goes into."""
    return "".join(ch for ch in text if ch >= " " and ch != "\x7f")


def _same_origin(cfg: Config, request: Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.rstrip("/") == cfg.public_url
    return request.headers.get("Sec-Fetch-Site") == "same-origin"


def submit(request: Request) -> Response:
    cfg = config.current()
    caller = Caller(request, cfg)
    if (request.content_length or 0) > MAX_FORM_BYTES:
        return _page(cfg, "Request too large", "<p>The form was too large.</p>", 413)
    if not _same_origin(cfg, request):
        caller.audit("device.refused", actor="anonymous", reason="cross_origin")
        return _page(cfg, "Request refused", "<p>This form must be sent from the gateway's own page.</p>", 403)
    cookie = request.cookies.get(_cookie_name(cfg, "gw_csrf"), "")
    sent = request.form.get("csrf_token", "")
    if not cookie or not hmac.compare_digest(sent.encode(), crypto.sign(cfg, cookie, CSRF_PURPOSE).encode()):
        caller.audit("device.refused", actor="anonymous", reason="csrf")
        return _page(
            cfg, "Request refused", '<p>The page expired. <a href="/device">Open it again</a> and retry.</p>', 403
        )
    typed = _printable(request.form.get("user_code", ""))[:40]
    action = request.form.get("action", "approve")
    _, token, _ = _csrf_pair(cfg, request)
    user_code = crypto.normalize_user_code(typed)
    # Only failed entries count against an address, and a correct code is looked up before the
    # address is refused, so wrong guesses behind one NAT never lock out a colleague's valid code.
    # Past the limit an address may still complete codes issued to that same address (Claude Code
    # and the browser behind one NAT), so guessing other people's codes stays bounded by the limit.
    limit = cfg.rate_limits.device_verify
    bucket = f"device_verify:{caller.ip}"
    failures, retry_after = ratelimit.current(bucket, limit)
    over = failures >= limit.max
    if user_code is None or not store.pending_device_code(user_code, issued_to=caller.ip if over else None):
        failures, retry_after = ratelimit.hit(bucket, limit)
        caller.audit("device.code_rejected", actor="anonymous", target=typed[:12], limited=over)
        if failures > limit.max:
            exc = ratelimit.refusal("wrong code entries", retry_after)
            response = _page(cfg, "Too many attempts", f"<p>{html.escape(exc.description or '')}</p>", 429)
            response.headers.update(exc.headers)
            return response
        return _page(
            cfg,
            "Sign in to Claude Code",
            _form(cfg, token, typed, "That code is not valid or has expired. Check your terminal."),
            400,
        )
    shown = crypto.display_user_code(user_code)
    if action == "deny":
        store.settle_device_code(user_code, "denied")
        caller.audit("device.denied", actor="anonymous", target=shown, reason="user")
        return _page(cfg, "Sign-in denied", "<p>The sign-in was cancelled. You can close this window.</p>")
    if action != "approve":
        return _page(cfg, "Sign in to Claude Code", _form(cfg, token, shown, "Choose Approve or Deny."), 400)
    state, nonce, verifier = crypto.random_token(24), crypto.random_token(24), crypto.random_token(48)
    try:
        url = oidc.authorization_url(cfg, f"{cfg.public_url}/device/callback", state, nonce, verifier)
    except oidc.IdpError as exc:
        logs.error("cannot reach the IdP", error=str(exc))
        return _page(
            cfg, "Sign-in unavailable", "<p>The identity provider cannot be reached; try again shortly.</p>", 502
        )
    sealed = crypto.seal(
        cfg,
        json.dumps(
            {"s": state, "n": nonce, "v": verifier, "u": user_code, "exp": int(time.time()) + STATE_TTL_SECONDS}
        ),
        STATE_PURPOSE,
    )
    caller.audit("device.confirmed", actor="anonymous", target=shown)
    response = Response(
        status=303, headers={"Location": url, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )
    _set_cookie(cfg, response, "gw_oidc", sealed, STATE_TTL_SECONDS)
    return response


def callback(request: Request) -> Response:
    cfg = config.current()
    caller = Caller(request, cfg)
    raw = request.cookies.get(_cookie_name(cfg, "gw_oidc"), "")
    opened = crypto.unseal(cfg, raw, STATE_PURPOSE) if raw else None
    try:
        state = json.loads(opened) if opened else None
    except ValueError:
        state = None
    if (
        not isinstance(state, dict)
        or state.get("exp", 0) < time.time()
        or not hmac.compare_digest(str(state.get("s")).encode(), request.args.get("state", "").encode())
    ):
        caller.audit("device.refused", actor="anonymous", reason="bad_state")
        return _done(
            cfg,
            _page(cfg, "Sign-in expired", '<p>This sign-in link is stale. <a href="/device">Start again</a>.</p>', 400),
        )
    user_code = str(state["u"])
    shown = crypto.display_user_code(user_code)
    if request.args.get("error") or not request.args.get("code"):
        store.settle_device_code(user_code, "denied")
        caller.audit(
            "device.denied",
            actor="anonymous",
            target=shown,
            reason="idp_error",
            error=_printable(request.args.get("error", ""))[:100],
        )
        return _done(
            cfg,
            _page(
                cfg,
                "Sign-in failed",
                "<p>The identity provider did not sign you in. Run /login again in your terminal.</p>",
                400,
            ),
        )
    try:
        result = oidc.exchange_code(
            cfg, request.args["code"], str(state["v"]), f"{cfg.public_url}/device/callback", str(state["n"])
        )
        user = claims.user_from_claims(cfg, result.claims)
    except oidc.IdpUnavailable as exc:
        # No answer is not a refusal: the code stays pending, so the user can simply try again.
        logs.warning("OIDC sign-in deferred: the IdP did not answer", error=str(exc))
        caller.audit("device.refused", actor="anonymous", target=shown, reason="idp_unavailable")
        return _done(
            cfg,
            _page(
                cfg,
                "Sign-in unavailable",
                '<p>The identity provider cannot be reached. <a href="/device">Try again</a> shortly.</p>',
                503,
            ),
        )
    except oidc.IdpError as exc:
        logs.warning("OIDC sign-in failed", error=str(exc))
        store.settle_device_code(user_code, "denied")
        caller.audit("device.denied", actor="anonymous", target=shown, reason="idp_failure")
        return _done(
            cfg,
            _page(
                cfg,
                "Sign-in failed",
                "<p>The identity provider's answer did not verify. Run /login again in your terminal.</p>",
                502,
            ),
        )
    except claims.Refused as exc:
        store.settle_device_code(user_code, "denied")
        caller.audit("device.denied", actor="anonymous", target=shown, reason="not_allowed", message=str(exc))
        return _done(
            cfg,
            _page(
                cfg,
                "Access not allowed",
                f"<p>{html.escape(str(exc))}</p><p>Ask your administrator for access.</p>",
                403,
            ),
        )
    sealed = crypto.seal(cfg, result.refresh_token) if result.refresh_token else None
    record = json.dumps({"sub": user.sub, "email": user.email, "groups": list(user.groups)})
    if not store.settle_device_code(user_code, "approved", record, sealed):
        return _done(
            cfg,
            _page(
                cfg,
                "Code expired",
                "<p>This code expired or was already used. Run /login again in your terminal.</p>",
                400,
            ),
        )
    caller.audit("device.approved", actor=user.email, target=shown, groups=list(user.groups))
    return _done(
        cfg,
        _page(
            cfg,
            "You're signed in",
            f"<p>Signed in as <strong>{html.escape(user.email)}</strong>.</p>"
            "<p>Return to your terminal: Claude Code continues on its own. You can close this window.</p>",
        ),
    )


def _done(cfg: Config, response: Response) -> Response:
    """The OIDC state cookie is single use."""
    response.set_cookie(
        _cookie_name(cfg, "gw_oidc"), "", max_age=0, path="/", secure=_secure(cfg), httponly=True, samesite="Lax"
    )
    return response
