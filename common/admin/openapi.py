"""The admin API's OpenAPI 3.1 document (common/admin/openapi.yaml), served as JSON."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from flask import Request, Response

from common.http import json_response

DOCUMENT = Path(__file__).with_name("openapi.yaml")


@functools.cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def serve(request: Request) -> Response:
    return json_response(document(), headers={"Cache-Control": "public, max-age=300"})
