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


def test_events_read_back_newest_first_with_filters_and_cursors(tmp_path: Path, database_url: str) -> None:
    activate(write_config(tmp_path, base_config(database_url)))
    for n in range(5):
        audit.record("session.revoked" if n % 2 else "spend_limit.update", actor=f"key:{n}", target="t")
    everything, more = audit.events(limit=10)
    assert [e.actor for e in everything] == ["key:4", "key:3", "key:2", "key:1", "key:0"] and not more
    ids = [e.id for e in everything]
    first, more = audit.events(limit=2)
    assert [e.id for e in first] == ids[:2] and more
    older, more = audit.events(limit=2, older_than=first[-1].id)
    assert [e.id for e in older] == ids[2:4] and more
    newer, more = audit.events(limit=2, newer_than=ids[-1])
    assert [e.id for e in newer] == ids[2:4] and more  # the two just newer than the oldest, newest first
    spend, _ = audit.events(limit=10, action_prefix="spend_limit.")
    assert [e.actor for e in spend] == ["key:4", "key:2", "key:0"]
    (one,), _ = audit.events(limit=10, actor="key:3", action="session.revoked", target="t")
    assert one.action == "session.revoked" and one.before is None and one.at is not None
