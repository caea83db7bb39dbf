"""JSON responses, and the headers that keep OAuth answers out of caches."""

from __future__ import annotations

import json
from typing import Any

from flask import Response

JSON = "application/json"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"))
    return Response(body, status=status, headers=headers, content_type=JSON)
