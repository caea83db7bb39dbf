"""Postgres connections: a small per-instance pool (`Database`) and this instance's one (`get()`).

Connections are pg8000 DB-API connections (`%s` parameters), either from
`store.postgres_url` (local, tests, any Postgres) or from the Cloud SQL Python
Connector (IAM database auth, private IP, lazy refresh) when `store.cloud_sql`
is set. The modules that own tables hold their SQL; nothing else does.

Connections run in autocommit mode: a single statement is its own transaction
and costs one round trip (pg8000 would otherwise send a separate BEGIN).
`Database.transaction()` opens an explicit one when several statements must
commit together. `get()` applies pending migrations (`migrations.migrate`) on
an instance's first use.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.dbapi
from pg8000.dbapi import Connection

from common.config import Store
from common.db import migrations


class DatabaseUnavailable(Exception):
    """The database cannot be reached (connect failed, or the connection dropped)."""


_DISCONNECT_ERRORS: tuple[type[BaseException], ...] = (
    pg8000.dbapi.InterfaceError,
    OSError,
    EOFError,
    TimeoutError,
)


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, _DISCONNECT_ERRORS):
        return True
    # 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now
    if isinstance(exc, pg8000.dbapi.DatabaseError) and exc.args:
        detail = exc.args[0]
        if isinstance(detail, dict) and str(detail.get("C", "")).startswith(("57P", "08")):
            return True
    return False


def parse_url(url: str) -> dict[str, Any]:
    """pg8000 connect() arguments from a postgresql:// URL (host may be a socket dir)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("store.postgres_url must start with postgresql://")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    kwargs: dict[str, Any] = {
        "user": unquote(parts.username or query.get("user", "postgres")),
        "database": unquote(parts.path.lstrip("/") or query.get("dbname", "postgres")),
    }
    if parts.password or "password" in query:
        kwargs["password"] = unquote(parts.password or query["password"])
    host = unquote(parts.hostname or "") or query.get("host", "")
    if host.startswith("/"):
        port = parts.port or int(query.get("port", 5432))
        kwargs["unix_sock"] = f"{host}/.s.PGSQL.{port}"
    else:
        kwargs["host"] = host or "127.0.0.1"
        kwargs["port"] = parts.port or int(query.get("port", 5432))
    return kwargs


class Database:
    """A pool of at most `max_connections` connections to one database."""

    def __init__(self, settings: Store) -> None:
        self.settings = settings
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(max(1, settings.max_connections))
        self._connector: Any = None
        self._lock = threading.Lock()

    # -- connecting ---------------------------------------------------------------
    def _connect(self) -> Connection:
        timeout = self.settings.connect_timeout_seconds
        try:
            if self.settings.postgres_url:
                kwargs = parse_url(self.settings.postgres_url)
                conn = pg8000.dbapi.connect(timeout=timeout, application_name="claude-gateway", **kwargs)
            else:
                conn = self._connect_cloud_sql()
        except Exception as exc:
            raise DatabaseUnavailable(
                f"cannot connect to the database: {type(exc).__name__}: {describe_error(exc)}"
            ) from None
        conn.autocommit = True
        return conn

    def _connect_cloud_sql(self) -> Connection:
        cloud_sql = self.settings.cloud_sql
        assert cloud_sql is not None
        with self._lock:
            if self._connector is None:
                from google.cloud.sql.connector import Connector

                self._connector = Connector(refresh_strategy="lazy")
        from google.cloud.sql.connector import IPTypes

        ip_type = {"private": IPTypes.PRIVATE, "public": IPTypes.PUBLIC, "psc": IPTypes.PSC}[cloud_sql.ip_type]
        conn: Connection = self._connector.connect(
            cloud_sql.instance,
            "pg8000",
            user=cloud_sql.user,
            db=cloud_sql.database,
            enable_iam_auth=True,
            ip_type=ip_type,
            timeout=int(self.settings.connect_timeout_seconds) or 5,
        )
        return conn

    # -- pool ---------------------------------------------------------------------
    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection; a connection that failed is closed, not returned."""
        if not self._slots.acquire(timeout=self.settings.connect_timeout_seconds + 25):
            raise DatabaseUnavailable("all database connections are busy")
        conn: Connection | None = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            yield conn
        except BaseException as exc:
            if conn is not None and _is_disconnect(exc):
                _close_quietly(conn)
                conn = None
                self._drain_idle()  # its siblings went stale with it
                raise DatabaseUnavailable(f"database connection lost: {type(exc).__name__}") from exc
            if conn is not None and not conn.autocommit:
                conn.autocommit = True
            raise
        finally:
            if conn is not None:
                if getattr(conn, "_in_transaction", False):
                    with contextlib.suppress(Exception):
                        conn.rollback()
                self._idle.put(conn)
            self._slots.release()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[pg8000.dbapi.Cursor]:
        """A cursor inside one transaction: committed on success, rolled back on error."""
        with self.connection() as conn:
            conn.autocommit = False
            cursor = conn.cursor()
            try:
                yield cursor
                conn.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise
            finally:
                conn.autocommit = True

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (its own transaction) and return its rows, if any.

        The `%s` -> `$n` rewrite is cached per SQL text: pg8000's DB-API layer
        rescans the statement character by character on every call, which cost
        ~50 us per statement on the request path.
        """
        with self.connection() as conn:
            if not args:
                cursor = conn.cursor()
                cursor.execute(sql)
                return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
            context = conn.execute_unnamed(_native_sql(sql), vals=tuple(args))
            rows = context.rows
            return [tuple(row) for row in rows] if rows is not None else []

    def ping(self) -> None:
        """One round trip; pooled connections go stale when the server restarts,
        so a lost connection is retried once on a fresh one."""
        try:
            self.execute("SELECT 1")
        except DatabaseUnavailable as exc:
            if exc.__cause__ is None:  # connecting itself failed: the server is down
                raise
            self.execute("SELECT 1")

    def _drain_idle(self) -> None:
        while True:
            try:
                _close_quietly(self._idle.get_nowait())
            except queue.Empty:
                break

    def close(self) -> None:
        self._drain_idle()
        if self._connector is not None:
            with contextlib.suppress(Exception):
                self._connector.close()
            self._connector = None


# Process-wide; a pure function of the SQL text, so it can never go stale.
@functools.lru_cache(maxsize=512)
def _native_sql(sql: str) -> str:
    """`%s` placeholders rewritten to PostgreSQL's `$n` (what pg8000 sends)."""
    statement: str = pg8000.dbapi.convert_paramstyle("format", sql, ())[0]
    return statement


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def describe_error(exc: BaseException) -> str:
    """An error's message fit for a log line: any password in a URL masked."""
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", str(exc))


# --- the instance's database -----------------------------------------------------------

# This instance's pool: lives until `reset()` (or the process ends); built from
# the store settings current at first use, so a reload does not rebuild it.
_db: Database | None = None
_db_lock = threading.Lock()
_migrated = False


def get() -> Database:
    """This instance's pool, built from the current config on first use.

    Migrations run once per instance on first use unless GATEWAY_MIGRATE=0
    (production may run them from the `gateway migrate` command instead).
    """
    global _db, _migrated
    db = _db
    if db is not None and _migrated:
        return db
    with _db_lock:
        if _db is None:
            from common import config

            _db = Database(config.current().store)
        if not _migrated:
            if os.environ.get("GATEWAY_MIGRATE", "1") != "0":
                migrations.migrate(_db)
            _migrated = True
        return _db


def reset() -> None:
    """Forget the instance's pool (tests, config changes of store settings)."""
    global _db, _migrated
    with _db_lock:
        if _db is not None:
            _db.close()
        _db = None
        _migrated = False


def ready() -> tuple[bool, str]:
    """Does the database answer now? Used by /readyz."""
    started = time.monotonic()
    try:
        get().ping()
    except Exception as exc:
        return False, f"{type(exc).__name__}: {describe_error(exc)}"
    return True, f"ok in {(time.monotonic() - started) * 1000:.0f} ms"
