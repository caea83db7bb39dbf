"""Anthropic's API: a pass-through to `base_url` with the gateway's own API key.

The body goes as the client sent it, minus `tags` (never sent to any
upstream) and with the model id mapped when `models[].upstream_model` names
this upstream. The query string (`?beta=true`) is kept.
"""

from __future__ import annotations

from typing import Any

import msgspec

from common.config import Upstream
from common.proxy.upstreams.base import Prepared

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"  # sent only when the client sent no anthropic-version
_encode = msgspec.json.Encoder().encode


class AnthropicClient:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        base = (upstream.base_url or DEFAULT_BASE_URL).rstrip("/")
        # base_url is the API origin (like ANTHROPIC_BASE_URL); tolerate a trailing /v1.
        self._base = base.removesuffix("/v1")
        self._headers = {"x-api-key": upstream.auth.get("api_key", "")}

    def auth_headers(self) -> dict[str, str]:
        return self._headers

    def _body(self, model: str, body: dict[str, Any]) -> bytes:
        payload = {k: v for k, v in body.items() if k != "tags"}
        payload["model"] = model
        return _encode(payload)

    def messages(self, model: str, body: dict[str, Any], stream: bool, headers: dict[str, str], query: str) -> Prepared:
        suffix = f"?{query}" if query else ""
        headers.setdefault("anthropic-version", API_VERSION)
        return Prepared(f"{self._base}/v1/messages{suffix}", self._body(model, body), headers)

    def count_tokens(self, model: str, body: dict[str, Any], headers: dict[str, str], query: str) -> Prepared:
        suffix = f"?{query}" if query else ""
        headers.setdefault("anthropic-version", API_VERSION)
        return Prepared(f"{self._base}/v1/messages/count_tokens{suffix}", self._body(model, body), headers)
