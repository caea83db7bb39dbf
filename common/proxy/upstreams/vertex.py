"""Vertex AI (Agent Platform): Claude models behind Google's `rawPredict` endpoints.

URL shapes, body and credential as PROTOCOL.md "Vertex AI upstream" lists them:
the model moves from the body into the URL (an `@`-versioned id from
`models[].upstream_model`), `anthropic_version` joins the body, betas stay a
header. The credential is the instance's own service account through
google-auth Application Default Credentials (no key file), one credential per
instance, refreshed before it expires (google-auth counts a token as invalid a
few minutes before its expiry, so `valid` already means "not about to expire").
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import msgspec

from common.config import Upstream
from common.core import logs
from common.core.errors import GatewayError
from common.proxy.upstreams.base import POOL, Prepared

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_encode = msgspec.json.Encoder().encode


def default_base_url(region: str) -> str:
    """Vertex's regional endpoint (same table as Anthropic's Vertex SDK)."""
    if region == "global":
        return "https://aiplatform.googleapis.com/v1"
    if region in ("us", "eu"):
        return f"https://aiplatform.{region}.rep.googleapis.com/v1"
    return f"https://{region}-aiplatform.googleapis.com/v1"


class _Credential:
    """The instance's ADC access token, shared by every Vertex upstream of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._credentials: Any = None

    def header(self) -> str:
        creds = self._credentials
        if creds is None or not creds.valid:
            with self._lock:
                creds = self._credentials
                if creds is None or not creds.valid:
                    creds = self._refresh(creds)
        return f"Bearer {creds.token}"

    def _refresh(self, creds: Any) -> Any:
        # Imported here: google-auth's transports cost cold-start time that
        # only Vertex-backed instances need, once.
        import google.auth
        import google.auth.exceptions
        from google.auth.transport.urllib3 import Request

        try:
            if creds is None:
                creds, _ = google.auth.default(scopes=[SCOPE])
                self._credentials = creds
            creds.refresh(Request(POOL))  # type: ignore[no-untyped-call]
        except google.auth.exceptions.GoogleAuthError as exc:
            logs.error(
                "cannot obtain a Google access token for Vertex AI",
                error=f"{type(exc).__name__}: {exc}",
                fix="run on Cloud Run with a service account (or `gcloud auth application-default login` locally)",
            )
            raise GatewayError(
                502, "The gateway could not authenticate to the upstream; an operator must check its credentials."
            ) from None
        return creds

    def reset(self) -> None:
        with self._lock:
            self._credentials = None


CREDENTIAL = _Credential()


class VertexClient:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        region = upstream.region or "global"
        base = (upstream.base_url or default_base_url(region)).rstrip("/")
        self._prefix = f"{base}/projects/{quote(upstream.project_id or '', safe='')}/locations/{quote(region, safe='')}/publishers/anthropic/models/"
        self._anonymous = upstream.auth.get("anonymous", "").lower() in ("true", "1", "yes")
        self._version = upstream.anthropic_version

    def auth_headers(self) -> dict[str, str]:
        if self._anonymous:
            return {}
        return {"authorization": CREDENTIAL.header()}

    def messages(self, model: str, body: dict[str, Any], stream: bool, headers: dict[str, str], query: str) -> Prepared:
        payload = {k: v for k, v in body.items() if k != "model" and k != "tags"}
        payload["anthropic_version"] = self._version
        url = f"{self._prefix}{quote(model, safe='@')}:{'streamRawPredict' if stream else 'rawPredict'}"
        return Prepared(url, _encode(payload), headers)

    def count_tokens(self, model: str, body: dict[str, Any], headers: dict[str, str], query: str) -> Prepared:
        payload = {k: v for k, v in body.items() if k != "tags"}
        payload["model"] = model
        payload["anthropic_version"] = self._version
        return Prepared(f"{self._prefix}count-tokens:rawPredict", _encode(payload), headers)
