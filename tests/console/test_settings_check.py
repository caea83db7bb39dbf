"""The fleet page's managed-settings verdict accepts every value the protocol says is valid, on a real Postgres.

`claude gateway`'s /protocol (Claude Code 2.1.333): after an edit "keep accepting
the previous value for at least an hour, until every session has polled again",
and a session whose sign-in expired sends the value from before the expiry on its
first requests after a /login. The checksums are those `/managed/settings`
really serves (`managed.served_for`) before and after an edit of gateway.yaml;
when each was served is set in `managed_served` as the instances record it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import activate, base_config, deep_merge, write_config

from common import config
from common.db import pool
from common.policy import hints, managed

GROUPS = ["eng"]


def _config(tmp_path: Path, database_url: str, models: list[str]) -> Any:
    settings = {"availableModels": models, "env": {hints.HINT_ENV: "1"}}
    data = deep_merge(
        base_config(database_url), {"managed": {"policies": [{"name": "everyone", "settings": settings}]}}
    )
    activate(write_config(tmp_path, data, name=f"gateway-{len(models)}.yaml"))
    pool.get()
    return config.current()


@pytest.fixture
def forget() -> Iterator[None]:
    hints.forget()
    yield
    hints.forget()


def _served(cfg: Any, hours_ago: float, first_hours_ago: float | None = None) -> str:
    """Serve the settings of `cfg` as /managed/settings does, then date the record."""
    served = managed.served_for(cfg, GROUPS)
    assert served is not None
    hints.record(served.checksum, "everyone")
    pool.get().execute(
        "UPDATE managed_served SET last_served_at = now() - make_interval(secs => %s),"
        " first_served_at = now() - make_interval(secs => %s) WHERE checksum = %s",
        (hours_ago * 3600, (first_hours_ago if first_hours_ago is not None else hours_ago) * 3600, served.checksum),
    )
    hints.forget()  # a new per-instance copy of the served set, as after REFRESH_SECONDS
    return served.checksum


def test_values_before_and_after_an_edit_match_while_the_protocol_says_they_are_valid(
    tmp_path: Path, database_url: str, forget: None
) -> None:
    before = _config(tmp_path, database_url, ["sonnet"])
    old = _served(before, hours_ago=0.5, first_hours_ago=30)
    after = _config(tmp_path, database_url, ["sonnet", "haiku"])  # the edit: a new checksum for the same policy
    new = _served(after, hours_ago=0, first_hours_ago=0.4)
    assert old != new
    check = lambda cfg, value: managed.settings_check(cfg, GROUPS, value)  # noqa: E731
    # Both values, on an instance with either config (instances reload at their own pace), quoted or not.
    for cfg in (before, after):
        assert check(cfg, old) == check(cfg, new) == check(cfg, f'"{old}"') == "match"
    assert check(after, "sha256:" + "0" * 64) == "unknown"
    assert check(after, None) == "missing"

    # A weekend: the old value was last served 60 hours ago, the edit's value first 2 hours ago. Machines that
    # were off (or signed out) since have not polled again: their first requests still send the old value.
    _served(before, hours_ago=60, first_hours_ago=200)
    _served(after, hours_ago=0, first_hours_ago=2)
    assert check(after, old) == "match"
    # Once the new value has been out for ACCEPT_HOURS every session has had its chance to poll: stale.
    _served(after, hours_ago=0, first_hours_ago=hints.ACCEPT_HOURS + 1)
    assert check(after, old) == "unknown"
    # Without any newer value of its policy, a value is still not valid forever.
    pool.get().execute("DELETE FROM managed_served WHERE checksum = %s", (new,))
    _served(before, hours_ago=hints.MAX_STALE_DAYS * 24 - 1, first_hours_ago=400)
    hints.forget()
    assert check(after, old) == "match"
    _served(before, hours_ago=hints.MAX_STALE_DAYS * 24 + 1, first_hours_ago=400)
    assert check(after, old) == "unknown"
    # The config's own checksum needs no record: an instance may check a value before any instance served it.
    pool.get().execute("DELETE FROM managed_served")
    hints.forget()
    assert check(after, new) == "match" and check(after, old) == "unknown"
