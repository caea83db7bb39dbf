"""`python -m gateway spend replay FILE`: apply the settles an instance logged as `spend.unsettled`.

An instance that could not write a settle before it stopped (the database was
away at SIGTERM, the retry queue was full) logs the whole settle row as a
`spend.unsettled` line (`common.spend.queue`). This command reads such lines
from FILE, in any of the forms they are collected in:

- the gateway's own stderr: one JSON object per line (other lines skipped);
- a Cloud Logging export: one `LogEntry` per line, or a JSON array of them
  (`gcloud logging read --format=json`), the row under `jsonPayload`.

and writes each row with the gateway's own settle (`batcher.write_one`). The
settle key (the reservation id) makes it idempotent: a row already in the
ledger, listed twice, or replayed again adds nothing, so running it twice, or
on a log that also holds rows the instance did write later, is safe.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UNSETTLED = "spend.unsettled"


@dataclass
class Replay:
    lines: int = 0
    found: int = 0  # spend.unsettled entries
    malformed: int = 0  # entries whose row is not a settle row
    distinct: int = 0
    already: int = 0  # in the ledger before this run
    applied: int = 0
    refused: int = 0  # still not in the ledger after this run (the database refused them)

    def summary(self) -> str:
        return (
            f"{self.found} spend.unsettled entries in {self.lines} lines ({self.distinct} distinct settles): "
            f"{self.applied} applied, {self.already} already in the ledger, {self.refused} refused, "
            f"{self.malformed} malformed"
        )


def _entries(text: str, replay: Replay) -> Iterator[Any]:
    """Every JSON value of the file: a whole-file array/object, else one per line."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            whole = json.loads(stripped)
        except ValueError:
            whole = None
        if isinstance(whole, list):
            replay.lines = len(whole)
            yield from whole
            return
    for line in text.splitlines():
        replay.lines += 1
        start = line.find("{")
        if start < 0:
            continue
        try:
            yield json.loads(line[start:])
        except ValueError:
            continue


def unsettled_rows(text: str, replay: Replay) -> list[dict[str, Any]]:
    """The settle rows of the `spend.unsettled` entries of `text`, in order."""
    rows: list[dict[str, Any]] = []
    for entry in _entries(text, replay):
        if not isinstance(entry, dict):
            continue
        payload = entry.get("jsonPayload", entry)
        if not isinstance(payload, dict) or payload.get("message") != UNSETTLED:
            continue
        replay.found += 1
        row = payload.get("row")
        if isinstance(row, dict):
            rows.append(row)
        else:
            replay.malformed += 1
    return rows


def replay_file(path: Path) -> Replay:
    from common.db import pool
    from common.spend import batcher, store
    from common.spend.store import SettleRow

    replay = Replay()
    settles: dict[str, SettleRow] = {}
    for item in unsettled_rows(path.read_text(encoding="utf-8", errors="replace"), replay):
        try:
            row = SettleRow.from_item(item)
        except (KeyError, ValueError, TypeError):
            replay.malformed += 1
            continue
        settles.setdefault(row.reservation_key, row)
    replay.distinct = len(settles)
    db = pool.get()
    keys = list(settles)
    before = store.recorded(db, keys)
    replay.already = len(before)
    for key, row in settles.items():
        if key not in before:
            batcher.write_one(db, row)
    after = store.recorded(db, keys)
    replay.applied = len(after - before)
    replay.refused = len(settles) - len(after)
    return replay


def main(path: str, config_path: str | None) -> int:
    from common import config
    from common.db import pool

    if config_path:
        config.use(config_path)
    file = Path(path)
    try:
        replay = replay_file(file)
    except pool.DatabaseUnavailable as exc:
        print(f"the database is unavailable ({pool.describe_error(exc)}); nothing was applied", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot read {file}: {exc.strerror}", file=sys.stderr)
        return 1
    print(replay.summary())
    return 1 if replay.refused or replay.malformed else 0
