"""Secret Manager access with the function's own identity, cached per instance.

The client library is imported on first use only (it is heavy and most
requests never need it). `SECRET_MANAGER_ENDPOINT` points the client at a local
stand-in speaking the REST wire format (tests); then no credentials are used.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_client: Any = None
_lock = threading.Lock()
_cache: dict[str, str] = {}


def _get_client() -> Any:
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                from google.cloud import secretmanager

                endpoint = os.environ.get("SECRET_MANAGER_ENDPOINT")
                if endpoint:
                    from google.api_core.client_options import ClientOptions
                    from google.auth.credentials import AnonymousCredentials

                    _client = secretmanager.SecretManagerServiceClient(
                        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                        transport="rest",
                        client_options=ClientOptions(api_endpoint=endpoint),
                    )
                else:
                    _client = secretmanager.SecretManagerServiceClient(transport="rest")
    return _client


def access_version(name: str) -> tuple[str, str]:
    """(resolved version name, payload text) of a secret version, uncached."""
    response = _get_client().access_secret_version(request={"name": name}, timeout=10)
    return response.name, response.payload.data.decode("utf-8")


def access(name: str) -> str:
    """The payload of a secret version; pinned versions are cached for the instance."""
    if "/versions/" not in name:
        name += "/versions/latest"
    cached = _cache.get(name)
    if cached is not None:
        return cached
    _, text = access_version(name)
    _cache[name] = text
    return text


def clear_cache() -> None:
    _cache.clear()
