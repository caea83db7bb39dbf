"""Fixtures the spend tests over HTTP share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.standins import upstream as standin_module


@pytest.fixture(scope="module")
def standin() -> Iterator[Any]:
    handle = standin_module.start()
    yield handle
    handle.stop()
