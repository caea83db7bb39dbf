"""`/healthz` (the process is up) and `/readyz` (and its database answers) of every function."""

from __future__ import annotations

from flask import Response

from common.core import logs
from common.db import pool
from common.http.responses import json_response


def respond(kind: str, function: str) -> Response:
    """The answer to the probe `kind` ('healthz' or 'readyz', as `paths.health_kind` names it)."""
    if kind == "healthz":
        return json_response({"status": "ok", "function": function})
    ok, detail = pool.ready()
    if not ok:  # the detail names the database host and port: the log's, never the public body's
        logs.warning("readiness probe: database unavailable", function=function, detail=detail)
    return json_response(
        {"status": "ok" if ok else "unavailable", "function": function, "database": "ok" if ok else "unavailable"},
        status=200 if ok else 503,
    )
