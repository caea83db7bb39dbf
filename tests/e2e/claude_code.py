"""Drive the REAL Claude Code CLI (native binary) against our gateway.

Pieces, each small:
- `ensure_cli()` fetches the pinned native build from npm into `.cache/claude-code/`
  (ignored by git) once; later runs reuse it (npm's own cache makes a re-fetch offline).
- `require()` turns a missing prerequisite into a plain skip, or a failure under CI.
- `managed_settings()` writes `/etc/claude-code/managed-settings.json` for the run and
  puts back whatever was there (the CLI reads only that path on Linux).
- `Tmux` runs the interactive CLI on a private tmux server and reads its screen.
- `Browser` plays the person at the verification page with one cookie jar.
- `environment()` / `run_print()` run `claude -p` with a throwaway HOME.

See /work/shared/E2E.md (facts checked against the real CLI) and docs/e2e.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from gateway import claude_cli

ROOT = Path(__file__).resolve().parents[2]
# The version these tests were checked with; the screens below are this version's.
VERSION = os.environ.get("CLAUDE_CODE_E2E_VERSION", claude_cli.VERSION)

CACHE = Path(os.environ.get("CLAUDE_CODE_E2E_CACHE", ROOT / ".cache" / "claude-code"))
MANAGED_SETTINGS = Path("/etc/claude-code/managed-settings.json")
# Serialises e2e runs on one machine: the managed-settings file is machine-wide.
LOCK_PATH = Path(tempfile.gettempdir()) / "claude-code-e2e.lock"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(ok: bool, why: str) -> None:
    """Skip plainly when a prerequisite is missing; under CI=true that is a failure."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"e2e prerequisite missing under CI: {why}", pytrace=False)
    pytest.skip(f"e2e skipped: {why}")


def prerequisites() -> None:
    """Everything the real-CLI tests need on this machine, checked before any work."""
    require(
        os.name == "posix" and os.geteuid() == 0, "not root (writing /etc/claude-code/managed-settings.json needs root)"
    )
    require(shutil.which("tmux") is not None, "tmux is not installed (apt-get install tmux)")
    require(shutil.which("npm") is not None, "npm is not installed (needed to fetch the Claude Code CLI)")
    require(shutil.which("node") is not None, "node is not installed (the stand-in IdP is an npm package)")


# --- the CLI ---------------------------------------------------------------------------


def ensure_cli(version: str = VERSION, cache: Path = CACHE) -> Path:
    """The pinned native `claude`, fetched with `npm pack` on first use and cached (gateway.claude_cli)."""
    return claude_cli.ensure(version, cache)


# --- machine-wide managed settings -----------------------------------------------------


@contextlib.contextmanager
def e2e_lock(timeout: float = 240) -> Iterator[None]:
    """One real-CLI run at a time on this machine (they share /etc/claude-code)."""
    with claude_cli.file_lock(LOCK_PATH, timeout):
        yield


class ManagedSettings:
    """Owns /etc/claude-code/managed-settings.json for a run; restores the original after."""

    def __init__(self, path: Path = MANAGED_SETTINGS) -> None:
        self.path = path
        # Survives a crashed run: the next run restores from it before doing anything.
        self.backup = path.with_name(path.name + ".e2e-backup")
        self.absent_marker = path.with_name(path.name + ".e2e-absent")
        self._created_dir = False

    def __enter__(self) -> ManagedSettings:
        self._recover()
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True)
            self._created_dir = True
        if self.path.exists():
            shutil.copy2(self.path, self.backup)
        else:
            self.absent_marker.touch()
        return self

    def write(self, settings: dict[str, Any] | str) -> None:
        text = settings if isinstance(settings, str) else json.dumps(settings, indent=2)
        self.path.write_text(text, encoding="utf-8")
        self.path.chmod(0o644)

    def _recover(self) -> None:
        if self.backup.exists():
            os.replace(self.backup, self.path)
        elif self.absent_marker.exists():
            self.path.unlink(missing_ok=True)
            self.absent_marker.unlink()

    def __exit__(self, *exc: object) -> None:
        self._recover()
        if self._created_dir:
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()


def managed_settings_for(url: str) -> dict[str, str]:
    """The machine's managed settings for a gateway at `url` (what `gateway onboard --url` emits)."""
    return {"forceLoginMethod": "gateway", "forceLoginGatewayUrl": url}


def environment(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: nothing of ours (no ANTHROPIC_*, no proxies) leaks into the CLI."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "DISABLE_AUTOUPDATER": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Machine:
    """The developer machine the CLI runs on, beyond its HOME: what its environment adds (e.g. the
    CA it trusts) and a command the CLI runs through (`ip netns exec NAME`: another network)."""

    env: dict[str, str] = field(default_factory=dict)
    prefix: tuple[str, ...] = ()

    def command(self, claude: Path, *args: str) -> list[str]:
        return [*self.prefix, str(claude), *args]

    @classmethod
    def trusting(cls, ca: Path, host: str, prefix: tuple[str, ...] = ()) -> Machine:
        """A machine that trusts the CA in file `ca` (the Bun-built CLI honours NODE_EXTRA_CA_CERTS)
        and reaches `host` directly, not through a proxy."""
        return cls({"NODE_EXTRA_CA_CERTS": str(ca), "NO_PROXY": f"127.0.0.1,localhost,{host}"}, prefix)


def run_print(
    claude: Path,
    home: Path,
    cwd: Path,
    prompt: str,
    timeout: float = 90,
    extra_env: dict[str, str] | None = None,
    machine: Machine = Machine(),
) -> subprocess.CompletedProcess[str]:
    """`claude -p PROMPT` with this HOME and nothing else; bounded by `timeout`."""
    try:
        return subprocess.run(
            machine.command(claude, "-p", prompt),
            cwd=cwd,
            env=environment(home, {**machine.env, **(extra_env or {})}),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise AssertionError(
            f"claude -p did not finish in {timeout:.0f}s\nstdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}"
        ) from None


def tls_diagnosis(claude: Path, home: Path, machine: Machine, limit: int = 40) -> str:
    """After a TLS failure: what the CLI says about its CA list, from one `claude --debug -p` run
    with the same machine (its own debug log, beside HOME). Only certificate lines are kept."""
    log = home.parent / f"tls-debug-{uuid.uuid4().hex[:6]}.txt"
    env = environment(home, {**machine.env, "CLAUDE_CODE_DEBUG_LOGS_DIR": str(log)})
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(
            machine.command(claude, "--debug", "-p", "hi"),
            cwd=home.parent,
            env=env,
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    kept = [line for line in lines if "CA certs" in line or "certificate" in line.lower()]
    return "\n".join(kept[-limit:]) or "(no certificate lines in the CLI's debug log)"


def sign_in_failure(
    exc: AssertionError, claude: Path, home: Path, machine: Machine, server_tail: str
) -> AssertionError:
    """A failed sign-in's message: the screen, the gateway's log tail and, if the CLI rejected the
    certificate, what its own debug log says about the CA list it built."""
    diagnosis = ""
    if "TLS certificate" in str(exc):
        diagnosis = f"\n\nThe CLI's CA list (claude --debug -p, same machine):\n{tls_diagnosis(claude, home, machine)}"
    return AssertionError(f"{exc}\n\nGateway log tail:\n{server_tail}{diagnosis}")


def answer_of(done: subprocess.CompletedProcess[str]) -> str:
    """A `claude -p` run for an assertion message: exit status and both outputs' tails."""
    return f"exit {done.returncode}\nstdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-2000:]}"


# --- the terminal ----------------------------------------------------------------------


class ScreenTimeout(AssertionError):
    pass


class Tmux:
    """An interactive program on a private tmux server (its own socket: never the user's)."""

    def __init__(self, width: int = 160, height: int = 50) -> None:
        self.socket = f"claude-e2e-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.width, self.height = width, height
        self.history: list[str] = []
        self.started = False
        self.socket_path = ""

    def _tmux(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=15, env=env)
        if check and done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        # The server takes its environment from this first client: only `env`.
        self._tmux(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            str(self.width),
            "-y",
            str(self.height),
            "-c",
            str(cwd),
            *command,
            env=env,
        )
        self.started = True
        self.socket_path = self._tmux("display-message", "-p", "#{socket_path}", check=False).strip()
        # Keep the last screen readable if the program exits or crashes.
        self._tmux("set-option", "-t", "e2e", "remain-on-exit", "on", check=False)

    def screen(self) -> str:
        text = self._tmux("capture-pane", "-p", "-J", "-t", "e2e", check=False)
        if not self.history or self.history[-1] != text:
            self.history.append(text)
        return text

    def last(self) -> str:
        return self.history[-1] if self.history else "(no screen captured)"

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "e2e", *keys)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "e2e", "-l", text)

    def dead(self) -> bool:
        out = self._tmux("display-message", "-p", "-t", "e2e", "#{pane_dead}", check=False)
        return out.strip() == "1"

    def wait_for(
        self,
        pattern: str | re.Pattern[str] | Callable[[str], bool],
        timeout: float,
        what: str = "",
    ) -> str:
        """Poll the screen until `pattern` matches; on timeout fail with the last screen."""
        test: Callable[[str], bool]
        if callable(pattern) and not isinstance(pattern, re.Pattern):
            test = pattern
        else:
            regex = re.compile(pattern) if isinstance(pattern, str) else pattern
            test = lambda text: regex.search(text) is not None  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if test(text):
                return text
            if time.monotonic() > deadline or self.dead():
                state = "the program exited" if self.dead() else f"{timeout:.0f}s passed"
                raise ScreenTimeout(
                    f"waiting for {what or pattern!r}: {state}. Last screen:\n{'-' * 60}\n{text}\n{'-' * 60}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if self.started:
            self._tmux("kill-server", check=False)
            self.started = False
            if self.socket_path.endswith(self.socket):  # tmux leaves its socket file behind
                Path(self.socket_path).unlink(missing_ok=True)


# --- the browser -----------------------------------------------------------------------


class _Forms(HTMLParser):
    """The <form>s of a page with their inputs and submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {"action": a.get("action", ""), "method": a.get("method", "get"), "fields": {}, "buttons": []}
            )
        elif self.forms and tag == "input" and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif self.forms and tag == "button" and a.get("name"):
            self.forms[-1]["buttons"].append((a["name"], a.get("value", "")))


class Browser:
    """What a person's browser does at the verification page, with one cookie jar."""

    def __init__(self, gateway: str, verify: str | bool = True) -> None:
        self.gateway = gateway.rstrip("/")
        self.http = requests.Session()
        # An https gateway: the test CA's file, as the person's browser trusts it. Passed on each
        # request: requests lets $REQUESTS_CA_BUNDLE override a Session's own `verify`.
        self.verify = verify
        self.http.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) claude-code-e2e"
        self.trail: list[str] = []

    def approve(self, verification_uri_complete: str, user_code: str, timeout: float = 20) -> requests.Response:
        """Open the link, check the pre-filled code, press Approve, follow the IdP round trip."""
        page = self.http.get(verification_uri_complete, timeout=timeout, verify=self.verify)
        self.trail.append(f"GET {verification_uri_complete} -> {page.status_code}")
        assert page.status_code == 200, f"verification page: {page.status_code} {page.text[:500]}"
        parser = _Forms()
        parser.feed(page.text)
        forms = [f for f in parser.forms if f["method"].lower() == "post"]
        assert forms, f"no POST form on the verification page:\n{page.text[:2000]}"
        form = forms[0]
        fields = dict(form["fields"])
        prefilled = fields.get("user_code", "")
        assert prefilled.replace("-", "").upper() == user_code.replace("-", "").upper(), (
            f"page pre-filled {prefilled!r}, the terminal shows {user_code!r}"
        )
        approve = [b for b in form["buttons"] if b[1].lower() == "approve"]
        if approve:
            fields[approve[0][0]] = approve[0][1]
        action = urljoin(page.url, form["action"] or page.url)
        # What a browser adds to a same-origin form post; the page's CSRF defence checks them.
        headers = {"Origin": self.gateway, "Sec-Fetch-Site": "same-origin", "Referer": page.url}
        done = self.http.post(
            action, data=fields, headers=headers, timeout=timeout, allow_redirects=True, verify=self.verify
        )
        for hop in [*done.history, done]:
            self.trail.append(f"{hop.request.method} {_strip_query(hop.url)} -> {hop.status_code}")
        return done


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


# --- the sign-in, screen by screen -----------------------------------------------------

CODE = re.compile(r"Code:\s+([A-Z0-9]{4}-[A-Z0-9]{4})")
DEVICE_URL = re.compile(r"(https?://\S+/device)\b")
# The normal prompt: the input line between two rules (it may hold placeholder text).
PROMPT = re.compile(r"^─{20,}\s*\n❯.*\n─{20,}", re.M)


def choose(tmux: Tmux, option: str, timeout: float = 10) -> None:
    """Move the highlight (❯) to `option` with Up/Down, then Enter; never trust the default."""
    marked = re.compile(r"❯\s*(?:✔\s*)?(?:\d+\.\s*)?" + re.escape(option))
    for key in ("", "Up", "Up", "Up", "Down", "Down", "Down", "Down", "Down", "Down"):
        if key:
            tmux.send(key)
            time.sleep(0.15)
        if marked.search(tmux.screen()):
            tmux.send("Enter")
            return
    tmux.wait_for(marked, timeout, what=f"the highlight on {option!r}")


@dataclass
class SignIn:
    """What a /login left behind and what it saw."""

    home: Path
    workdir: Path
    screens: list[str] = field(default_factory=list)  # names, in the order handled
    user_code: str = ""
    screen_url: str = ""
    opened_url: str = ""  # what the CLI handed to $BROWSER: verification_uri_complete
    trust_screen: str = ""  # the `Trust gateway HOST?` screen as shown (https: with the fingerprint)
    browser_trail: list[str] = field(default_factory=list)
    browser_status: int = 0
    browser_text: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def credentials_path(self) -> Path:
        return self.home / ".claude" / ".credentials.json"

    def credentials(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.credentials_path.read_text())
        return data


def _browser_recorder(directory: Path) -> tuple[Path, Path]:
    """A $BROWSER program that only writes down the URL the CLI asks it to open."""
    opened = directory / "opened-urls.txt"
    script = directory / "record-browser.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {shlex.quote(str(opened))}\n')
    script.chmod(0o755)
    return script, opened


def _absent(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda text: pattern.search(text) is None


def trust_pattern(host: str) -> re.Pattern[str]:
    return re.compile(rf"Trust gateway {re.escape(host)}\?")


def sign_in(
    claude: Path,
    gateway: str,
    home: Path,
    workdir: Path,
    tmux: Tmux,
    deadline_s: float = 120,
    machine: Machine = Machine(),
    verify: str | bool = True,
    again: bool = False,
) -> SignIn:
    """A HOME through `/login` exactly as a person does it (E2E.md's screens), then /exit.

    Screens are matched in whatever order they come; each is handled once and
    must go away before the next is looked for. The browser part runs when the
    code is on screen. `verify` is what the person's browser trusts (an https
    gateway: the test CA's file). `again`: a HOME that signed in before, which
    starts at the prompt; the person types `/login` there.
    """
    home.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    browser_program, opened = _browser_recorder(home.parent)
    opened.unlink(missing_ok=True)  # a second sign-in of the same HOME reads only its own link
    result = SignIn(home=home, workdir=workdir)
    started = time.monotonic()
    env = environment(home, {"BROWSER": str(browser_program), **machine.env})
    tmux.start(machine.command(claude), workdir, env)
    if again:
        tmux.wait_for(PROMPT, 60, what="the prompt of a signed-in HOME")
        tmux.type("/login")
        time.sleep(0.3)
        tmux.send("Enter")
        # The dialog takes the prompt's place: only then do the screens below start.
        tmux.wait_for(_absent(PROMPT), 15, what="/login to open")

    def trust(text: str) -> None:
        result.trust_screen = result.trust_screen or text
        choose(tmux, "Yes, trust")

    def browser_part(text: str) -> None:
        code = CODE.search(text)
        url = DEVICE_URL.search(text)
        assert code and url, f"no code or URL on the sign-in screen:\n{text}"
        result.user_code, result.screen_url = code.group(1), url.group(1)
        result.seconds["code_on_screen"] = time.monotonic() - started
        # The CLI opens verification_uri_complete with $BROWSER; fall back to building it.
        for _ in range(20):
            if opened.exists() and opened.read_text().strip():
                break
            time.sleep(0.1)
        result.opened_url = opened.read_text().strip().splitlines()[-1] if opened.exists() else ""
        target = result.opened_url or f"{result.screen_url}?user_code={result.user_code}"
        browser = Browser(gateway, verify)
        done = browser.approve(target, result.user_code)
        result.browser_trail, result.browser_status, result.browser_text = browser.trail, done.status_code, done.text
        assert done.status_code == 200 and "signed in" in done.text.lower(), (
            f"browser part failed: {browser.trail}\n{done.text[:1500]}"
        )
        result.seconds["browser_done"] = time.monotonic() - started

    screens: list[tuple[str, re.Pattern[str], Callable[[str], None]]] = [
        ("theme", re.compile(r"Choose the text style"), lambda _: tmux.send("Enter")),
        ("connect", re.compile(r"Enter to connect"), lambda _: tmux.send("Enter")),
        ("trust_gateway", trust_pattern(urlsplit(gateway).hostname or ""), trust),
        ("code", CODE, browser_part),
        ("account", re.compile(r"Signed in to Cloud gateway as \S+"), lambda _: choose(tmux, "Yes, continue")),
        ("connected", re.compile(r"Connected to Cloud gateway"), lambda _: tmux.send("Enter")),
        ("security_notes", re.compile(r"Security notes"), lambda _: tmux.send("Enter")),
        ("folder_trust", re.compile(r"Yes, I trust this folder"), lambda _: choose(tmux, "Yes, I trust this folder")),
        (
            "managed_approval",
            re.compile(r"Managed settings require approval"),
            # An Enter sent the moment this dialog appears was lost in every run: give it a second.
            lambda _: (time.sleep(1.0), choose(tmux, "Yes, I trust these settings")),
        ),
    ]
    handled: set[str] = set()
    end = started + deadline_s
    while True:
        text = tmux.wait_for(
            lambda s: bool(PROMPT.search(s)) or any(p.search(s) for n, p, _ in screens if n not in handled),
            max(1.0, end - time.monotonic()),
            what="the next sign-in screen or the prompt",
        )
        match = next(((n, p, act) for n, p, act in screens if n not in handled and p.search(text)), None)
        if match is None:  # the prompt: signed in and past every first-run screen
            break
        name, pattern, act = match
        handled.add(name)
        result.screens.append(name)
        result.seconds[name] = time.monotonic() - started
        gone = _absent(pattern)
        if name == "code":
            act(text)
            # The code screen stays up until the CLI's next poll (interval 5 s) sees the approval.
            tmux.wait_for(gone, 30, what="the CLI to see the approval")
            continue
        # A key sent while a screen is still mounting can be lost: act again (at most 3
        # times) if the screen is still there; every action here is safe to repeat.
        for attempt in range(3):
            time.sleep(0.3)
            act(tmux.screen())
            try:
                tmux.wait_for(gone, 4 if attempt < 2 else 10, what=f"{name} to go away")
                break
            except ScreenTimeout:
                if attempt == 2:
                    raise
    result.seconds["prompt"] = time.monotonic() - started
    tmux.type("/exit")
    time.sleep(0.3)
    tmux.send("Enter")
    tmux.wait_for(lambda _: tmux.dead(), 15, what="the CLI to exit after /exit")
    result.seconds["exited"] = time.monotonic() - started
    return result
