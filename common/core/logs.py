"""Structured JSON log lines that Cloud Logging reads natively.

One line per event on stderr with Cloud Logging's field names (`severity`,
`message`, `time`, `logging.googleapis.com/labels`). Every line carries the
request id of the request being served. Callers pass facts as keyword fields;
fields whose names look like credentials are redacted here as a last line of
defence, but the rule is simply never to log tokens, secrets or prompt text.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import json
import os
import sys
import threading
from typing import Any, TextIO

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_function: str = os.environ.get("K_SERVICE") or os.environ.get("FUNCTION_TARGET") or ""
_lock = threading.Lock()
_stream: TextIO = sys.stderr

_SECRET_WORDS = ("token", "secret", "password", "authorization", "api_key", "apikey", "cookie")
_ALLOWED = {"token_type", "token_endpoint", "token_hint", "token_kind"}
_LEVELS = {"DEBUG": 10, "INFO": 20, "NOTICE": 25, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_min_level = _LEVELS.get(os.environ.get("LOG_LEVEL", "INFO").upper(), 20)


def set_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def current_request_id() -> str | None:
    return _request_id.get()


def set_function(name: str) -> None:
    global _function
    _function = name


def set_stream(stream: TextIO) -> None:
    """Redirect log lines (tests capture them to check nothing secret leaks)."""
    global _stream
    _stream = stream


def set_level(severity: str) -> str:
    """Write lines of `severity` and above from now on (tests lower it to see DEBUG); returns the previous one."""
    global _min_level
    previous = next(name for name, level in _LEVELS.items() if level == _min_level)
    _min_level = _LEVELS[severity.upper()]
    return previous


def _redact(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        lowered = key.lower()
        if lowered not in _ALLOWED and any(word in lowered for word in _SECRET_WORDS):
            out[key] = "[redacted]"
        else:
            out[key] = value
    return out


def log(severity: str, message: str, **fields: Any) -> None:
    if _LEVELS.get(severity, 20) < _min_level:
        return
    entry: dict[str, Any] = {
        "severity": severity,
        "message": message,
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    request_id = _request_id.get()
    labels: dict[str, str] = {}
    if request_id:
        entry["request_id"] = request_id
        labels["request_id"] = request_id
    if _function:
        labels["function"] = _function
    if labels:
        entry["logging.googleapis.com/labels"] = labels
    entry.update(_redact(fields))
    line = json.dumps(entry, default=str, separators=(",", ":"))
    with _lock:
        _stream.write(line + "\n")
        _stream.flush()


def debug(message: str, **fields: Any) -> None:
    log("DEBUG", message, **fields)


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields: Any) -> None:
    log("ERROR", message, **fields)
