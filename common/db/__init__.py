"""PostgreSQL: the connection pool (pg8000, or the Cloud SQL connector with IAM auth), migrations, keyset pages.

`pool` holds connections, `Database` (with `transaction()`), this instance's
`get()` / `reset()` / `ready()`, `DatabaseUnavailable` and `describe_error()`;
`migrations` the numbered SQL files and `migrate()` (under an advisory lock);
`pages` `keyset_page()`, the one keyset-pagination query; `retention`
`sweep()`, batched deletes under one advisory lock (the tables' owners give the deletes). The SQL of each
table group lives in the package that owns the tables (`auth.store`,
`auth.ratelimit`, `audit.records`, `spend`); this package knows no table but
`schema_migrations`.
"""

__all__ = [
    "migrations",
    "pages",
    "pool",
    "retention",
]
