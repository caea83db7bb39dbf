"""Numbered SQL migrations (`migrations/NNN_name.sql`), applied once each under an advisory lock.

`migrate()` is idempotent: it records each applied file in `schema_migrations`
(the only table this package knows) and skips what is there. Instances that
start together serialise on one `pg_advisory_lock`, so each file runs exactly
once. `pool.get()` calls it on an instance's first use; `gateway migrate` runs
it on demand.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from pg8000.dbapi import Connection

from common.core import logs

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_ID = 0x6761_7465  # "gate": pg_advisory_lock key for migrations


class Connections(Protocol):
    """What `migrate()` needs of a pool (`pool.Database`); a protocol so this module does not import the pool that calls it."""

    def connection(self) -> AbstractContextManager[Connection]: ...


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, Path]]:
    """(version, name, path) of every migration file, in order; a misnamed or duplicate number is an error."""
    out: list[tuple[int, str, Path]] = []
    for path in sorted(directory.glob("*.sql")):
        match = re.fullmatch(r"(\d{3})_([a-z0-9_]+)\.sql", path.name)
        if not match:
            raise ValueError(f"migration file {path.name} must be named NNN_name.sql")
        out.append((int(match.group(1)), match.group(2), path))
    versions = [v for v, _, _ in out]
    if len(versions) != len(set(versions)):
        raise ValueError("two migration files share a number")
    return out


def migrate(db: Connections, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending numbered migrations, each in its own transaction; idempotent.

    An advisory lock serialises instances that start together, so each
    migration runs exactly once. Returns the names applied now.
    """
    applied_now: list[str] = []
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_ID,))
        try:
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in cursor.fetchall()}
            for version, name, path in migration_files(directory):
                if version in done:
                    continue
                conn.autocommit = False
                try:
                    cursor.execute(path.read_text(encoding="utf-8"))
                    cursor.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
                finally:
                    conn.autocommit = True
                applied_now.append(f"{version:03d}_{name}")
                logs.info("migration applied", migration=f"{version:03d}_{name}")
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_ID,))
    return applied_now
