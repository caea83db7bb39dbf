"""The managed-settings checksum exactly as Claude Code computes it.

Claude Code (2.1.x) hashes the settings it holds and sends the result as
`If-None-Match` on its next poll of `/managed/settings`; the gateway must serve
the same value as `checksum` and `ETag` for a 304 to ever happen. The client's
code is, in effect:

    function sortKeys(v) {                      // arrays keep their order
      if (Array.isArray(v)) return v.map(sortKeys);
      if (v !== null && typeof v === "object") {
        const o = {}; for (const k of Object.keys(v).sort()) o[k] = sortKeys(v[k]); return o;
      }
      return v;
    }
    checksum = "sha256:" + sha256hex(JSON.stringify(sortKeys(settings)))   // UTF-8

So this module reproduces JavaScript, not Python, where they differ:
- `Array.prototype.sort()` orders keys by UTF-16 code units (Python's `sorted`
  orders by code points: they disagree between U+E000..U+FFFF and astral keys);
- a JS object enumerates integer-like keys ("0", "10") first, ascending by value,
  whatever order they were inserted in, then the other keys in insertion order;
- `JSON.stringify` writes non-ASCII characters raw (UTF-8 in the hash), escapes
  only `"`, `\\` and control characters, escapes lone surrogates as `\\udXXX`;
- numbers print as JavaScript prints doubles: `1.0` -> `1`, `1e-7` -> `1e-7`,
  `1e21` -> `1e+21`, `123456789012345680000` for 1.2345678901234568e20.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
from decimal import Decimal
from typing import Any

_ARRAY_INDEX_MAX = 2**32 - 2  # ECMAScript array index: canonical uint32 below 2^32 - 1
_JS_SAFE_INT = 2**53
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class NotJson(ValueError):
    """The value cannot be served as JSON the client would hash like we do."""


def _utf16_key(key: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly like JavaScript's code-unit order.
    return key.encode("utf-16-be", "surrogatepass")


def _is_array_index(key: str) -> bool:
    if not key.isascii() or not key.isdigit():
        return False
    if len(key) > 1 and key[0] == "0":
        return False
    return int(key) <= _ARRAY_INDEX_MAX


def js_key_order(keys: list[str]) -> list[str]:
    """Keys as a JS object built by inserting `Object.keys(x).sort()` enumerates them."""
    ordered = sorted(keys, key=_utf16_key)
    indexes = sorted((k for k in ordered if _is_array_index(k)), key=int)
    return indexes + [k for k in ordered if not _is_array_index(k)]


def js_number(value: int | float) -> str:
    """`String(x)` of the JS number a JSON parser makes of `value` (Number::toString)."""
    if isinstance(value, int) and abs(value) < _JS_SAFE_INT:
        return str(value)
    number = float(value)  # big ints round to the nearest double, as JSON.parse does
    if not math.isfinite(number):
        raise NotJson(f"{value!r} is not a finite number")
    if number == 0:
        return "0"  # -0 prints as 0
    # repr gives the shortest round-tripping digits, as ECMAScript requires.
    parts = Decimal(repr(abs(number))).as_tuple()
    digits = "".join(map(str, parts.digits)).lstrip("0")
    exponent = int(parts.exponent)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)
    point = k + exponent  # ECMAScript's n: value = 0.digits * 10^point
    if k <= point <= 21:
        text = digits + "0" * (point - k)
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * (-point) + digits
    else:
        e = point - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))
    return ("-" if number < 0 else "") + text


def _js_string(text: str) -> str:
    # json.dumps(ensure_ascii=False) escapes exactly what JSON.stringify escapes
    # (", \, \b \f \n \r \t, other controls as lower-case \u00XX), except lone
    # surrogates, which JSON.stringify (ES2019) writes as escapes.
    out = json.dumps(text, ensure_ascii=False)
    if _LONE_SURROGATE.search(out):
        out = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", out)
    return out


def plain(value: Any, path: str = "settings") -> Any:
    """`value` as plain JSON types (YAML dates become ISO strings); NotJson names the bad path."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise NotJson(f"{path}: {value!r} is not a finite number; JSON has no NaN or infinity")
        return value
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJson(f"{path}: key {key!r} is not a string; quote it in gateway.yaml")
            if key == "__proto__":
                raise NotJson(f"{path}: the key '__proto__' cannot be served to a JavaScript client")
            out[key] = plain(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise NotJson(f"{path}: {type(value).__name__} values cannot be served as JSON")


def dumps(value: Any) -> str:
    """`JSON.stringify(sortKeys(value))` for plain JSON values."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_js_string(value))
    elif isinstance(value, int | float):
        out.append(js_number(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(js_key_order(list(value))):
            if i:
                out.append(",")
            out.append(_js_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise NotJson(f"{type(value).__name__} is not a JSON value")


def checksum(settings: Any) -> str:
    """`sha256:` + hex SHA-256 of the canonical JSON (UTF-8), as Claude Code computes it."""
    text = dumps(settings)
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
