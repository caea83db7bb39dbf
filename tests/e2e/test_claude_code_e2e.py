"""End to end: the REAL Claude Code CLI signs in to our gateway with `/login` and works through it.

One gateway (gunicorn, real Postgres, stand-in IdP and model upstream) and one
sign-in serve the module; each test then works on its own copy of the signed-in
HOME. See docs/e2e.md. Skipped plainly without root/tmux/npm, failed under CI=true.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import claude_code as cc
import pytest
import requests
import stack as gateway_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Settings the gateway serves: nested keys out of order and non-ASCII text, so the
# checksum only agrees with the CLI's if it is computed the way the CLI computes it.
POLICY_SETTINGS: dict[str, Any] = {
    "permissions": {"deny": ["WebFetch"], "allow": ["Read"]},
    "companyAnnouncements": ["Gateway e2e — grüße ✓"],
    "availableModels": ["opus", "sonnet", "haiku"],
}
# A browser's view of the managed-settings checksum: JSON.stringify of the settings with
# keys sorted at every level, SHA-256 over its UTF-8. Run by node, not by our Python.
NODE_CHECKSUM = r"""
const crypto = require("node:crypto");
const sortKeys = (v) => Array.isArray(v) ? v.map(sortKeys)
  : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])])) : v;
const settings = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
process.stdout.write("sha256:" + crypto.createHash("sha256").update(JSON.stringify(sortKeys(settings)), "utf8").digest("hex"));
"""


def node_checksum(settings: Any) -> str:
    done = subprocess.run(
        ["node", "-e", NODE_CHECKSUM], input=json.dumps(settings), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def gateway(claude: Path, pg: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[gateway_stack.Stack]:
    """The gateway on loopback, and the machine's managed settings pointing the CLI at it."""
    workdir = tmp_path_factory.mktemp("e2e-gateway")
    overrides = {"managed": {"policies": [{"name": "everyone", "settings": POLICY_SETTINGS}]}}
    with (
        cc.e2e_lock(),
        cc.ManagedSettings() as managed,
        gateway_stack.stack(pg.create_database(), workdir, overrides) as running,
    ):
        managed.write(cc.managed_settings_for(running.url))
        running.managed = managed
        yield running


class Login:
    def __init__(self, result: cc.SignIn, mark: tuple[int, int], last_screen: str) -> None:
        self.result = result
        self.requests_from, self.requests_to = mark
        self.last_screen = last_screen


@pytest.fixture(scope="module")
def login(claude: Path, gateway: gateway_stack.Stack, tmp_path_factory: pytest.TempPathFactory) -> Login:
    """One complete `/login` of a fresh HOME, driven under tmux like a person would."""
    base = tmp_path_factory.mktemp("e2e-login")
    tmux = cc.Tmux()
    before = gateway.mark()
    try:
        result = cc.sign_in(claude, gateway.url, base / "home", base / "project", tmux)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n\nGateway log tail:\n{gateway.server_tail()}") from None
    finally:
        last = tmux.last()
        tmux.stop()
    return Login(result, (before, gateway.mark()), last)


def copy_home(login: Login, into: Path) -> Path:
    """A test's own copy of the signed-in HOME (the CLI rewrites it as it goes)."""
    home = into / "home"
    shutil.copytree(login.result.home, home, symlinks=True)
    return home


def test_login_then_print_goes_through_the_gateway(
    claude: Path, gateway: gateway_stack.Stack, login: Login, tmp_path: Path
) -> None:
    result = login.result
    signin = gateway.requests()[login.requests_from : login.requests_to]
    # Every screen of E2E.md came and was passed, in this order.
    required = ["theme", "connect", "trust_gateway", "code", "account", "connected", "security_notes", "folder_trust"]
    # The served policy pushes the telemetry exporter env (telemetry.forward_to is set), so
    # the CLI asks to approve it; E2E.md's optional screen is required here.
    required.append("managed_approval")
    assert [s for s in result.screens if s in required] == required, (result.screens, login.last_screen)

    # The terminal showed the code and the page; the CLI opened verification_uri_complete.
    assert result.screen_url == f"{gateway.url}/device"
    assert result.opened_url == f"{gateway.url}/device?user_code={result.user_code}"
    # The browser went page -> confirm -> IdP -> our callback, and was told it is signed in.
    hops = [hop.split(" ")[1] for hop in result.browser_trail]
    assert hops[-1].startswith(f"{gateway.url}/device/callback"), result.browser_trail
    assert any(hop.startswith(gateway.idp.issuer) for hop in hops), result.browser_trail

    # What the gateway saw from the CLI during the sign-in, with its real user agent.
    cli_calls = [r for r in signin if r["headers"].get("user-agent", "").startswith("claude-code/")]
    paths = [(r["method"], r["path"], r["status"]) for r in cli_calls]
    assert ("POST", "/oauth/device_authorization", 200) in paths, paths
    token_calls = [r for r in cli_calls if r["path"] == "/oauth/token"]
    assert token_calls and token_calls[-1]["status"] == 200, token_calls
    assert {r["grant_type"] for r in token_calls} == {"urn:ietf:params:oauth:grant-type:device_code"}
    assert all(r["status"] in (200, 400) for r in token_calls), token_calls  # pending polls are 400

    # The interactive start-up's background call (a dated Haiku id) went through too.
    startup = [r for r in signin if r["path"] == "/v1/messages"]
    assert startup and all(r["status"] == 200 for r in startup), startup

    # The stored credential: ours, for this gateway, with both tokens, expiring in the future.
    creds = result.credentials()
    assert result.credentials_path.stat().st_mode & 0o777 == 0o600
    stored = creds["enterpriseGateway"]
    assert stored["url"] == gateway.url
    assert stored["tokenEndpoint"] == f"{gateway.url}/oauth/token"
    assert stored["email"] == gateway_stack.USER["email"]
    assert stored["jwt"].count(".") == 2  # our session JWT
    assert len(stored["idpRefreshToken"]) >= 32  # the gateway's opaque refresh token
    assert stored["expiresAt"] > time.time() * 1000
    assert creds["gatewayTrust"] == {"127.0.0.1": "http-loopback"}
    from support import activate

    from common import config
    from common.auth import sessions

    activate(gateway.config_path)
    identity = sessions.verify(config.current(), stored["jwt"])
    assert identity.email == gateway_stack.USER["email"]
    assert list(identity.groups) == gateway_stack.USER["groups"]

    # The same HOME, no extra environment: `claude -p` is answered by the stand-in via /v1/messages.
    mark, upstream_mark = gateway.mark(), len(gateway.upstream.requests)
    started = time.monotonic()
    done = cc.run_print(claude, result.home, result.workdir, "hi")
    result.seconds["print_hi"] = time.monotonic() - started
    print(f"e2e timings (s): {json.dumps({k: round(v, 1) for k, v in result.seconds.items()})}")
    calls = gateway.since(mark)
    assert done.returncode == 0, cc.answer_of(done) + f"\ngateway: {calls}\n{gateway.server_tail()}"
    assert gateway_stack.REPLY.strip() in done.stdout, cc.answer_of(done)
    inference = [r for r in calls if r["path"] == "/v1/messages" and r["method"] == "POST"]
    assert inference and all(r["status"] == 200 for r in inference), calls
    assert any(r["stream"] is True for r in inference), inference
    # ...and the stand-in got it in Vertex AI's shape (model in the URL, not the body).
    vertex = [r for r in gateway.upstream.requests[upstream_mark:] if r.path.endswith(":streamRawPredict")]
    assert vertex, [r.url for r in gateway.upstream.requests[upstream_mark:]]
    assert vertex[-1].json.get("anthropic_version") == "vertex-2023-10-16", vertex[-1].url
    assert "model" not in vertex[-1].json, vertex[-1].url


def test_expired_access_token_is_refreshed(
    claude: Path, gateway: gateway_stack.Stack, login: Login, tmp_path: Path
) -> None:
    home = copy_home(login, tmp_path)
    path = home / ".claude" / ".credentials.json"
    before = json.loads(path.read_text())["enterpriseGateway"]
    creds = json.loads(path.read_text())
    creds["enterpriseGateway"]["expiresAt"] = int((time.time() - 60) * 1000)
    path.write_text(json.dumps(creds))
    path.chmod(0o600)

    mark = gateway.mark()
    done = cc.run_print(claude, home, login.result.workdir, "hi")
    calls = gateway.since(mark)
    assert done.returncode == 0, cc.answer_of(done) + f"\ngateway: {calls}"
    assert gateway_stack.REPLY.strip() in done.stdout, cc.answer_of(done)
    refreshes = [r for r in calls if r["path"] == "/oauth/token"]
    assert [(r["grant_type"], r["status"]) for r in refreshes] == [("refresh_token", 200)], calls
    first_inference = next(i for i, r in enumerate(calls) if r["path"] == "/v1/messages")
    assert calls.index(refreshes[0]) < first_inference, "the CLI must refresh before using the token"

    after = json.loads(path.read_text())["enterpriseGateway"]
    assert after["expiresAt"] > time.time() * 1000
    assert after["jwt"] != before["jwt"]
    assert after["idpRefreshToken"] != before["idpRefreshToken"], "refresh tokens rotate on each use"


def test_managed_settings_cached_and_revalidated_with_our_etag(
    claude: Path, gateway: gateway_stack.Stack, login: Login, tmp_path: Path
) -> None:
    signin = gateway.requests()[login.requests_from : login.requests_to]
    fetches = [r for r in signin if r["path"] == "/managed/settings"]
    assert fetches and fetches[0]["status"] == 200, signin
    assert "if-none-match" not in fetches[0]["headers"], "a fresh HOME has nothing to revalidate"
    etag = fetches[0]["etag"]

    # What the gateway serves this user: the policy's settings plus the telemetry env it pushes.
    token = login.result.credentials()["enterpriseGateway"]["jwt"]
    served = requests.get(f"{gateway.url}/managed/settings", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert served.status_code == 200 and served.headers["ETag"] == etag
    settings = served.json()["settings"]
    assert {k: v for k, v in settings.items() if k != "env"} == POLICY_SETTINGS
    assert settings["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == gateway.url
    # The CLI caches the settings themselves (no checksum stored beside them)...
    cached = json.loads((login.result.home / ".claude" / "remote-settings.json").read_text())
    assert cached == settings
    # ...so the If-None-Match it sends is its own checksum of them. Ours must be the same.
    expected = node_checksum(settings)
    assert etag == f'"{expected}"'
    assert served.json()["checksum"] == expected

    home = copy_home(login, tmp_path)
    mark = gateway.mark()
    done = cc.run_print(claude, home, login.result.workdir, "hi")
    calls = [r for r in gateway.since(mark) if r["path"] == "/managed/settings"]
    # (the revalidation comes before any inference: this holds whatever the answer was)
    assert calls, f"the CLI did not revalidate its managed settings; {cc.answer_of(done)}"
    assert calls[0]["headers"].get("if-none-match") == etag, calls
    assert all(r["status"] == 304 for r in calls), calls


def test_user_removed_at_the_idp_is_signed_out_at_next_refresh(
    claude: Path, gateway: gateway_stack.Stack, tmp_path: Path
) -> None:
    """Off-boarding: once the IdP no longer knows the user, the CLI's refresh is refused.

    A user of its own signs in for this (removing them revokes their whole session
    family, which must not touch the sessions other tests use).
    """
    leaver = {"email": "leaver@example.com", "sub": "leaver-0002", "email_verified": True, "groups": ["eng"]}
    gateway.idp.set_user(leaver["email"], **{k: v for k, v in leaver.items() if k != "email"})
    gateway.idp.login_as(leaver["email"])
    tmux = cc.Tmux()
    try:
        result = cc.sign_in(claude, gateway.url, tmp_path / "home", tmp_path / "project", tmux)
    finally:
        tmux.stop()
        gateway.idp.login_as(gateway_stack.USER["email"])
    assert result.credentials()["enterpriseGateway"]["email"] == leaver["email"]
    creds = result.credentials()
    creds["enterpriseGateway"]["expiresAt"] = int((time.time() - 60) * 1000)
    result.credentials_path.write_text(json.dumps(creds))
    assert gateway.idp.remove_user(leaver["email"])

    mark = gateway.mark()
    done = cc.run_print(claude, result.home, result.workdir, "hi")
    calls = gateway.since(mark)
    refreshes = [(r["grant_type"], r["status"]) for r in calls if r["path"] == "/oauth/token"]
    assert refreshes and set(refreshes) == {("refresh_token", 401)}, calls
    assert not [r for r in calls if r["path"] == "/v1/messages" and r["status"] == 200], calls
    assert done.returncode != 0, cc.answer_of(done)
    assert "no longer accepts this session" in done.stderr and "/login" in done.stderr, cc.answer_of(done)


def test_onboarding_output_is_accepted_by_the_cli(claude: Path, gateway: gateway_stack.Stack, tmp_path: Path) -> None:
    """`python -m gateway onboard --url URL`, written verbatim as managed settings, leads to our sign-in."""
    made = subprocess.run(
        [sys.executable, "-m", "gateway", "onboard", "--url", gateway.url],
        cwd=gateway_stack.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    settings = json.loads(made.stdout)
    assert settings["forceLoginMethod"] == "gateway"
    assert settings["forceLoginGatewayUrl"] == gateway.url
    tmux = cc.Tmux()
    gateway.managed.write(made.stdout)  # byte for byte what an MDM would install
    try:
        mark = gateway.mark()
        (tmp_path / "home").mkdir()
        tmux.start([str(claude)], tmp_path, cc.environment(tmp_path / "home"))
        tmux.wait_for("Choose the text style", 30)
        tmux.send("Enter")
        screen = tmux.wait_for("Enter to connect", 15, what="the Cloud gateway screen")
        assert f"Gateway:  {gateway.url}" in screen, screen
        tmux.send("Enter")
        tmux.wait_for(r"Trust gateway 127\.0\.0\.1\?", 15)
        cc.choose(tmux, "Yes, trust")
        tmux.wait_for(cc.CODE, 15, what="the sign-in code")
        started = [r for r in gateway.since(mark) if r["path"] == "/oauth/device_authorization"]
        assert [r["status"] for r in started] == [200], gateway.since(mark)
    finally:
        tmux.stop()
        gateway.managed.write(cc.managed_settings_for(gateway.url))


def test_cli_telemetry_reaches_the_collector_with_the_verified_identity(
    claude: Path, gateway: gateway_stack.Stack, login: Login, tmp_path: Path
) -> None:
    """The pushed env turns on the CLI's OTLP export to the gateway, which stamps who it really is."""
    from support.otlp_receiver import data_points

    home = copy_home(login, tmp_path)
    # A developer trying to pass as someone else through the standard OTel variable.
    spoof = {"OTEL_RESOURCE_ATTRIBUTES": "user.email=mallory@evil.example,user.id=mallory,enduser.id=mallory"}
    received_before = len(gateway.collector.received)
    mark = gateway.mark()
    done = cc.run_print(claude, home, login.result.workdir, "hi", extra_env=spoof)
    calls = gateway.since(mark)
    assert done.returncode == 0, cc.answer_of(done)
    exports = [r for r in calls if r["path"] in ("/v1/metrics", "/v1/logs")]
    assert any(r["path"] == "/v1/metrics" for r in exports), calls
    assert all(r["status"] == 200 and r["bearer"] for r in exports), exports

    def cli_points() -> list[tuple[dict[str, Any], dict[str, Any], float]]:
        with gateway.collector.lock:
            fresh = [m for path, m, _ in gateway.collector.received[received_before:] if path == "/v1/metrics"]
        return [p for p in data_points(fresh, "claude_code.token.usage") if p[0].get("service.name") == "claude-code"]

    deadline = time.monotonic() + 15
    while not cli_points() and time.monotonic() < deadline:
        time.sleep(0.2)
    points = cli_points()
    assert points, f"no claude_code.token.usage from the CLI reached the collector; gateway saw {exports}"
    for resource, attributes, _ in points:
        for where in (resource, attributes):
            assert where["user.email"] == gateway_stack.USER["email"], where
            assert where["user.id"] == gateway_stack.USER["sub"], where
            assert "mallory" not in json.dumps(where), where
            assert not any(key.startswith("enduser.") for key in where), where
    assert {a["type"] for _, a, _ in points} >= {"input", "output"}
    assert {a["model"] for _, a, _ in points} == {"claude-opus-4-7"}

    # And the gateway's own count of the same request, from the upstream's usage.
    with gateway.collector.lock:
        fresh = [m for path, m, _ in gateway.collector.received[received_before:] if path == "/v1/metrics"]
    own = [p for p in data_points(fresh, "claude_code.token.usage") if p[0].get("service.name") == "claude-gateway"]
    assert any(
        a["model"] == "claude-opus-4-7" and a["type"] == "input" and a["user.email"] == gateway_stack.USER["email"]
        for _, a, _ in own
    ), own


def test_usage_shows_the_dollars_of_a_capped_user(
    claude: Path, gateway: gateway_stack.Stack, login: Login, tmp_path: Path
) -> None:
    """The real CLI's `/usage` shows a capped user's dollars from our /api/oauth/usage (Claude Code 2.1.333)."""
    from support import ADMIN_WRITE_KEY

    limits = f"{gateway.url}/v1/organizations/spend_limits"
    made = requests.post(
        limits,
        json={"scope": {"type": "user", "user_id": gateway_stack.USER["email"]}, "period": "daily", "amount": "400"},
        headers={"x-api-key": ADMIN_WRITE_KEY},
        timeout=10,
    )
    assert made.status_code in (200, 201), made.text
    home = copy_home(login, tmp_path)
    tmux = cc.Tmux()
    try:
        # One metered request first: its response headers are what the CLI pairs the dollars with.
        done = cc.run_print(claude, home, login.result.workdir, "hi")
        assert done.returncode == 0, cc.answer_of(done)
        mark = gateway.mark()
        tmux.start([str(claude)], login.result.workdir, cc.environment(home))
        tmux.wait_for(cc.PROMPT, 60, what="the prompt")
        tmux.type("/usage")
        time.sleep(0.5)
        tmux.send("Enter")
        screen = tmux.wait_for(
            re.compile(r"\$[\d.,]+ / \$4(?:\.00)? spent today"), 30, what="the spend limit in dollars on /usage"
        )
        assert "Spend limit" in screen, screen
        served = [r for r in gateway.since(mark) if r["path"] == "/api/oauth/usage"]
        assert served and all(r["status"] == 200 for r in served), gateway.since(mark)
    finally:
        tmux.stop()
        requests.delete(f"{limits}/{made.json()['id']}", headers={"x-api-key": ADMIN_WRITE_KEY}, timeout=10)
