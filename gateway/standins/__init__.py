"""LOCAL STAND-INS for what cannot run offline: the identity provider and the model upstream.

Used by `make run`, the tests and the benchmark. Each `start_*` returns a handle
with the address to configure and a `stop()`.
"""

from __future__ import annotations

from typing import Any


def start_idp(**options: Any) -> Any:
    """oauth2-mock-server (a real OIDC server from npm) on 127.0.0.1."""
    from gateway.standins.idp import start

    return start(**options)


def start_upstream(**options: Any) -> Any:
    """A model upstream speaking Vertex AI's and Anthropic's wire formats."""
    from gateway.standins.upstream import start

    return start(**options)
