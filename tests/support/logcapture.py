"""Log lines captured with `common.core.logs.set_stream`, DEBUG included, parsed."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from common.core import logs


class Captured:
    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]


@contextmanager
def capture_logs() -> Iterator[Captured]:
    capture = Captured()
    logs.set_stream(capture.buffer)
    previous = logs.set_level("DEBUG")  # access-log lines of 2xx responses are DEBUG
    try:
        yield capture
    finally:
        logs.set_level(previous)
        logs.set_stream(sys.stderr)
