"""The store on a real PostgreSQL: migrations, pool recovery, /readyz."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import base_config, write_config

from common.config import Store
from common.db import migrations, pages
from common.db import pool as store
from gateway import devdb

SCHEMA_QUERY = """
SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT tablename, indexname, indexdef, '', '' FROM pg_indexes WHERE schemaname = 'public'
ORDER BY 1, 2, 3
"""


def test_migrations_twice_leave_schema_unchanged(database_url: str) -> None:
    db = store.Database(Store(postgres_url=database_url))
    applied = migrations.migrate(db)
    assert applied and applied[0] == "001_base"
    schema_once = db.execute(SCHEMA_QUERY)
    assert migrations.migrate(db) == []
    assert db.execute(SCHEMA_QUERY) == schema_once
    versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [v for v, _, _ in migrations.migration_files()]
    db.close()


def test_concurrent_migrations_apply_once(database_url: str) -> None:
    import threading

    results: list[list[str]] = []
    dbs = [store.Database(Store(postgres_url=database_url)) for _ in range(4)]
    threads = [threading.Thread(target=lambda d=d: results.append(migrations.migrate(d))) for d in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = [name for r in results for name in r]
    assert sorted(applied) == sorted(f"{v:03d}_{n}" for v, n, _ in migrations.migration_files())
    for d in dbs:
        d.close()


def test_transaction_rolls_back_on_error(database_url: str) -> None:
    db = store.Database(Store(postgres_url=database_url))
    db.execute("CREATE TABLE t (x int)")
    with pytest.raises(RuntimeError), db.transaction() as cursor:
        cursor.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("boom")
    with db.transaction() as cursor:
        cursor.execute("INSERT INTO t VALUES (2)")
    assert db.execute("SELECT x FROM t") == [(2,)]
    db.close()


def test_parse_url_forms() -> None:
    assert store.parse_url("postgresql://u:p%40ss@h:6000/db") == {
        "user": "u",
        "password": "p@ss",
        "database": "db",
        "host": "h",
        "port": 6000,
    }
    assert store.parse_url("postgresql:///gw?host=/run/sock&user=me") == {
        "user": "me",
        "database": "gw",
        "unix_sock": "/run/sock/.s.PGSQL.5432",
    }
    with pytest.raises(ValueError):
        store.parse_url("mysql://x")


def test_unreachable_database_is_reported_without_password() -> None:
    db = store.Database(
        Store(postgres_url=f"postgresql://u:hunter2@127.0.0.1:{devdb.free_port()}/x", connect_timeout_seconds=1)
    )
    with pytest.raises(store.DatabaseUnavailable) as info:
        db.ping()
    assert "hunter2" not in str(info.value)


def test_readyz_follows_the_database(tmp_path: Path) -> None:
    """/readyz is 503 while the database is down and 200 once it is back."""
    from gateway import local

    server = devdb.start()  # its own temp dir: pytest resets tmp_path's root to 0700, out of postgres's reach
    try:
        url = server.create_database("gw")
        path = write_config(tmp_path, base_config(url))
        from support import activate

        activate(path)
        client = local.create_app().test_client()
        for probe in ("/readyz", "/_gateway/auth/readyz", "/_gateway/admin/readyz", "/_gateway/messages/readyz"):
            assert client.get(probe).status_code == 200, probe
        server.stop()
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["status"] == "unavailable"
        assert client.get("/healthz").status_code == 200  # the process is still up
        server.start()
        assert client.get("/readyz").status_code == 200
        assert client.get("/_gateway/auth/readyz").status_code == 200
    finally:
        devdb.remove(server)


def test_describe_error_masks_url_passwords() -> None:
    error = OSError("connect to postgresql://gw:s3cret@db.internal:5432/gw failed")
    described = store.describe_error(error)
    assert "s3cret" not in described
    assert "postgresql://gw:***@db.internal:5432/gw" in described


def test_keyset_pages_forwards_and_backwards(database_url: str) -> None:
    db = store.Database(Store(postgres_url=database_url))
    db.execute("CREATE TABLE items (id int PRIMARY KEY, kind text)")
    db.execute(
        "INSERT INTO items SELECT n, CASE WHEN n % 2 = 0 THEN 'even' ELSE 'odd' END FROM generate_series(1, 7) n"
    )

    def page(where: list[str], args: list[object], backwards: bool = False) -> tuple[list[int], bool]:
        rows, more = pages.keyset_page(db, "SELECT id FROM items", where, args, "id", True, 3, backwards)
        return [r[0] for r in rows], more

    assert page([], []) == ([7, 6, 5], True)
    assert page(["id < %s"], [5]) == ([4, 3, 2], True)
    assert page(["id < %s"], [2]) == ([1], False)
    # Before a cursor: the newer rows next to it, still listed newest first.
    assert page(["id > %s"], [1], backwards=True) == ([4, 3, 2], True)
    assert page(["kind = %s", "id < %s"], ["odd", 7]) == ([5, 3, 1], False)
    db.close()


def test_keyset_page_orders_every_key_column(database_url: str) -> None:
    db = store.Database(Store(postgres_url=database_url))
    db.execute("CREATE TABLE pairs (day int, id int, PRIMARY KEY (day, id))")
    db.execute("INSERT INTO pairs VALUES (1, 1), (1, 2), (2, 1), (2, 2)")
    rows, more = pages.keyset_page(db, "SELECT day, id FROM pairs", [], [], "day, id", True, 3)
    assert rows == [(2, 2), (2, 1), (1, 2)] and more
    db.close()
