"""The sign-in tables' SQL (`auth.store`) on a real PostgreSQL: each state change is one atomic statement."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from common.auth import crypto, store
from common.config import Store
from common.db import migrations, pool


@pytest.fixture
def db(database_url: str) -> Iterator[pool.Database]:
    database = pool.Database(Store(postgres_url=database_url, max_connections=8))
    migrations.migrate(database)
    yield database
    database.close()


def test_a_device_code_is_consumed_once_under_concurrent_polls(db: pool.Database) -> None:
    code_hash = crypto.digest("device-code")
    assert store.insert_device_code(code_hash, "BCDFGHJK", 600, 0, "203.0.113.9", "claude-code/2", db=db)
    assert not store.insert_device_code(crypto.digest("other"), "BCDFGHJK", 600, 0, None, None, db=db)
    assert store.pending_device_code("BCDFGHJK", db=db)
    first = store.poll_device_code(code_hash, 0.8, db=db)
    assert first is not None and first.before == first.after == "pending" and not first.expired
    user = json.dumps({"sub": "s", "email": "a@example.com", "groups": ["eng"]})
    assert store.settle_device_code("BCDFGHJK", "approved", user, "sealed", db=db)
    assert not store.settle_device_code("BCDFGHJK", "denied", db=db)  # no longer pending
    assert not store.pending_device_code("BCDFGHJK", db=db)

    polls: list[store.DevicePoll | None] = []
    threads = [
        threading.Thread(target=lambda: polls.append(store.poll_device_code(code_hash, 0.0, db=db))) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = [p for p in polls if p is not None and p.before == "approved" and p.after == "consumed"]
    assert len(took) == 1
    assert took[0].identity["email"] == "a@example.com" and took[0].sealed_idp_refresh == "sealed"
    assert store.poll_device_code(crypto.digest("unknown"), 0.8, db=db) is None


def test_refresh_tokens_rotate_and_a_replay_is_told_apart(db: pool.Database) -> None:
    store.open_session("ses_1", "s", "a@example.com", ["eng"], 3600, None, None, "sealed", crypto.digest("r1"), db=db)
    r1 = crypto.digest("r1")
    claim = store.claim_refresh_token(r1, "lease-a", 60, 60, db=db)
    assert claim == store.RefreshClaim("claimed", "ses_1", "a@example.com", False, False, "sealed", None)
    busy = store.claim_refresh_token(r1, "lease-b", 60, 60, db=db)
    assert busy is not None and busy.state == "busy"  # one lease at a time
    # Only the lease holder rotates.
    assert not store.rotate_session(
        "ses_1", "s", "a@example.com", [], "x", 3600, r1, "lease-b", "succ", 60, crypto.digest("rx"), db=db
    )
    store.release_refresh_claim(r1, "lease-a", db=db)  # a temporary failure gives it back
    again = store.claim_refresh_token(r1, "lease-c", 60, 60, db=db)
    assert again is not None and again.state == "claimed"
    assert store.rotate_session(
        "ses_1",
        "s",
        "a@example.com",
        ["eng", "ml"],
        "sealed2",
        3600,
        r1,
        "lease-c",
        "succ",
        60,
        crypto.digest("r2"),
        db=db,
    )
    repeat = store.claim_refresh_token(r1, "lease-d", 60, 60, db=db)
    assert repeat is not None and repeat.state == "rotated" and repeat.successor_sealed == "succ"
    replay = store.claim_refresh_token(r1, "lease-e", 60, 0, db=db)  # past the window: no successor to serve
    assert replay is not None and replay.state == "rotated" and replay.successor_sealed is None
    assert store.session_of_refresh_token(crypto.digest("r2"), db=db) == ("ses_1", "a@example.com")
    (row,), more = store.list_sessions(email="A@EXAMPLE.COM", db=db)
    assert row.groups == ["eng", "ml"] and row.last_refresh_at is not None and not more

    assert store.revoke_sessions("key:admin", "admin", session_id="ses_1", db=db) == [("ses_1", "a@example.com")]
    assert store.revoke_sessions("key:admin", "admin", session_id="ses_1", db=db) == []  # only active ones
    assert store.revoked_since(3600, db=db) == frozenset({"ses_1"})
    # A revoked family takes no new refresh token, and no longer lists as active.
    r2 = crypto.digest("r2")
    assert store.claim_refresh_token(r2, "lease-f", 60, 60, db=db) is not None
    assert not store.rotate_session(
        "ses_1", "s", "a@example.com", [], None, 3600, r2, "lease-f", "succ", 60, crypto.digest("r3"), db=db
    )
    assert store.list_sessions(db=db) == ([], False)
    assert len(store.list_sessions(active_only=False, db=db)[0]) == 1
