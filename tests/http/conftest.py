"""Fixtures of the web-layer tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.logcapture import Captured, capture_logs


@pytest.fixture
def captured() -> Iterator[Captured]:
    with capture_logs() as capture:
        yield capture
