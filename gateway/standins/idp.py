"""LOCAL STAND-IN identity provider: npm `oauth2-mock-server` (a real OIDC server) on 127.0.0.1.

`start()` installs the pinned package into `.cache/idp/` on first use (npm's
own cache makes later installs offline), runs `idp_server.mjs` (the server
plus a small user directory with a control endpoint) and returns a handle:
`.issuer`, `.stop()`, `.set_user(email, groups=…, email_verified=…, disabled=…)`,
`.remove_user(email)`, `.login_as(email)`, `.fail(status)` (every OIDC endpoint
answers `status`, e.g. 500; `0` heals it). Removing or disabling a user makes
the IdP refuse that user's refresh_token grant, like a real off-boarding.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("GATEWAY_IDP_CACHE", ROOT / ".cache" / "idp"))
PACKAGE = "oauth2-mock-server"
VERSION = "8.2.3"  # the last line that supports Node 20 (9.x needs Node 22+)
SCRIPT = Path(__file__).with_name("idp_server.mjs")
DEFAULT_USERS: tuple[dict[str, Any], ...] = (
    {"email": "dev@example.com", "sub": "dev-0001", "email_verified": True, "groups": ["eng"]},
)


def ensure_installed(cache: Path = CACHE) -> Path:
    """The folder holding node_modules/oauth2-mock-server at the pinned version."""
    marker = cache / "node_modules" / PACKAGE / "package.json"
    if marker.exists() and json.loads(marker.read_text()).get("version") == VERSION:
        return cache
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: the stand-in IdP (oauth2-mock-server) needs Node.js and npm")
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "package.json").write_text('{"private": true}\n')
    subprocess.run(
        [npm, "install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", f"{PACKAGE}@{VERSION}"],
        cwd=cache,
        check=True,
        timeout=300,
    )
    return cache


class Idp:
    """A running oauth2-mock-server and its user directory."""

    def __init__(self, process: subprocess.Popen[str], issuer: str) -> None:
        self.process = process
        self.issuer = issuer
        self._http = requests.Session()

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, f"{self.issuer}/_control/{path}", json=body, timeout=10)
        if response.status_code >= 400 and method != "DELETE":
            raise RuntimeError(f"IdP control {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def set_user(self, email: str, **fields: Any) -> dict[str, Any]:
        """Create or update a user: sub, email_verified, groups, disabled, claims (extra claims)."""
        result: dict[str, Any] = self._control("PUT", f"users/{quote(email, safe='')}", fields)
        return result

    def remove_user(self, email: str) -> bool:
        return bool(self._control("DELETE", f"users/{quote(email, safe='')}").get("removed"))

    def disable_user(self, email: str) -> None:
        self.set_user(email, disabled=True)

    def login_as(self, email: str) -> None:
        """The user the next /authorize signs in (the IdP has no login form)."""
        self._control("PUT", "login_as", {"email": email})

    def fail(self, status: int) -> None:
        """An outage: every OIDC endpoint answers `status` (an HTML body, as a broken proxy would); 0 heals."""
        self._control("PUT", "fail", {"status": status})

    def users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "users")
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._http.close()


def start(users: list[dict[str, Any]] | tuple[dict[str, Any], ...] = DEFAULT_USERS, port: int = 0, **_: Any) -> Idp:
    """Start the IdP on 127.0.0.1 (`port` 0: any free port); the first user signs in by default."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: the stand-in IdP (oauth2-mock-server) needs Node.js")
    cache = ensure_installed()
    process = subprocess.Popen(
        [node, str(SCRIPT), str(cache), str(port), json.dumps(list(users))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline() if process.stdout else ""))
    reader.start()
    reader.join(timeout=30)
    if not line or not line[0].strip():
        process.kill()
        err = process.stderr.read() if process.stderr else ""
        raise RuntimeError(f"the stand-in IdP did not start: {err.strip()[-2000:]}")
    info = json.loads(line[0])
    # Keep draining the server's output so a chatty IdP never blocks on a full pipe.
    for stream in (process.stdout, process.stderr):
        threading.Thread(target=_drain, args=(stream,), daemon=True).start()
    return Idp(process, str(info["issuer"]))


def _drain(stream: Any) -> None:
    if stream is not None:
        for _ in stream:
            pass
