"""PostgreSQL: the connection pool (pg8000, or the Cloud SQL connector with IAM auth), migrations, transactions.

The SQL of each table group lives in the package that owns the tables
(`auth.store`, `spend.store`, `audit.records`, `auth.ratelimit`); this package
knows no table but `schema_migrations`.
"""

__all__ = [
    "pool",
]
