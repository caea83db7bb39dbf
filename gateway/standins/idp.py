"""Placeholder: filled in by the sign-in / inference work."""

from typing import Any


def start(**options: Any) -> Any:
    raise NotImplementedError("the idp stand-in is not built yet")
