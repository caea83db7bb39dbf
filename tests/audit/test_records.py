"""Audit rows are written for events."""

from __future__ import annotations

from pathlib import Path

from support import activate, base_config, write_config

from common.audit import records as audit
from common.db import pool as store


def test_audit_rows_are_written(tmp_path: Path, database_url: str) -> None:
    activate(write_config(tmp_path, base_config(database_url)))
    audit.record(
        "spend_limit.update", actor="key:x", target="user:a@x.com", before={"amount": "1"}, after={"amount": "2"}
    )
    rows = store.get().execute("SELECT actor, action, target, before->>'amount', after->>'amount' FROM audit_log")
    assert [tuple(r) for r in rows] == [("key:x", "spend_limit.update", "user:a@x.com", "1", "2")]
