"""Helpers the spend tests share: a configured gateway on a fresh database, limits, requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support import activate, base_config, deep_merge, write_config


def setup_gateway(tmp_path: Path, database_url: str, extra: dict[str, Any] | None = None) -> Path:
    from common.db import pool
    from common.spend import caps, leases, observed, queue

    data = base_config(database_url)
    if extra:
        data = deep_merge(data, extra)
    path = write_config(tmp_path, data)
    activate(path)
    pool.get()
    caps.invalidate()
    queue.clear()
    leases.LEASES.clear()  # another database's leases (the book also notices a new pool)
    observed.OBSERVED.reset()  # what earlier tests' traffic taught admission stays with them
    return path


def set_limit(scope_type: str, scope_id: str, period: str, dollars: str, pooled: bool = False) -> None:
    import uuid
    from decimal import Decimal

    from common.db import pool
    from common.spend import caps, store

    micros = int(Decimal(dollars) * 1_000_000)
    store.upsert_limit(pool.get(), "splim_" + uuid.uuid4().hex[:20], scope_type, scope_id, period, micros, pooled)
    caps.invalidate()


def request_info(
    email: str = "dev@example.com",
    groups: tuple[str, ...] = (),
    model: str = "claude-haiku-4-5",
    max_tokens: int = 1000,
    input_bytes: int = 4000,
) -> Any:
    from common.core.identity import Identity
    from common.core.usage import RequestInfo

    return RequestInfo(
        identity=Identity(sub=email, email=email, groups=groups),
        model=model,
        upstream="vertex",
        upstream_model=model + "@20251001",
        max_tokens=max_tokens,
        input_bytes=input_bytes,
        request_id="req_test",
    )


def release_leases() -> int:
    """Release this process's budget leases as a stopping instance does, then reopen the book.

    A lease outlives its requests by design (the next ones are admitted against it), so a
    test that checks no hold is left releases them first; how many hold rows went."""
    from common.spend import leases, shutdown

    released = shutdown.release_leases()
    leases.LEASES.clear()
    return released


def settle_row(email: str, at: Any, cost: int, **fields: Any) -> Any:
    """A `SettleRow` of one request by `email` at `at` costing `cost` micro-dollars, charged to the user's own
    counter (none when free), with small token counts; `fields` overrides any other field."""
    import dataclasses
    import uuid
    from datetime import UTC

    from common.spend.store import SettleRow

    row = SettleRow(
        reservation_key=str(uuid.uuid4()),
        request_id="req",
        at=at,
        day=at.astimezone(UTC).date(),
        user_email=email,
        user_sub=None,
        groups=("eng",),
        model="claude-haiku-4-5",
        upstream="vertex",
        upstream_model=None,
        billing_group=None,
        endpoint="messages",
        status=200,
        input_tokens=10,
        output_tokens=20,
        cache_read_tokens=30,
        cache_write_5m_tokens=4,
        cache_write_1h_tokens=5,
        cost_micros=cost,
        counters=(("user:" + email, 0),) if cost else (),
        sweep=False,
    )
    return dataclasses.replace(row, **fields)
