"""msgspec validation errors rendered as gateway.yaml problems: key path, value, fix."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Literal

import msgspec

from common.config.references import join
from common.config.schema import Config

_MSGSPEC_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_PATH_PART = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[['\"]?([^\]'\"]+)['\"]?\]")

_TYPE_WORDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp in _TYPE_WORDS:
        return _TYPE_WORDS[tp]
    if origin is list:
        inner = _describe(args[0]) if args else "values"
        inner = {"a string": "strings", "an integer": "integers", "a number": "numbers"}.get(inner, inner)
        return f"a list of {inner}"
    if origin is dict:
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for match in _PATH_PART.finditer(path):
        key, index, quoted = match.groups()
        parts.append(int(index) if index is not None else (key or quoted or ""))
    return parts


def _render_path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else join(out, part)
    return out


def _type_at(parts: list[str | int]) -> Any:
    tp: Any = Config
    for part in parts:
        while typing.get_origin(tp) in (typing.Union, types.UnionType):
            candidates = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = candidates[0] if len(candidates) == 1 else candidates[-1]
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            hints = typing.get_type_hints(tp)
            if not isinstance(part, str) or part not in hints:
                return None
            tp = hints[part]
        elif typing.get_origin(tp) in (list, dict):
            args = typing.get_args(tp)
            tp = args[-1] if args else Any
        else:
            return None
    return tp


def _value_at(raw: Any, parts: list[str | int]) -> Any:
    value = raw
    for part in parts:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Providers Anthropic's gateway serves and we do not: named in the error so the fix is clear.
PROVIDERS_ELSEWHERE = ("bedrock", "foundry", "azure", "openai")


def schema_problem(exc: msgspec.ValidationError, raw: Any) -> str:
    match = _MSGSPEC_AT.match(str(exc))
    what = match.group("what") if match else str(exc)
    parts = _split_path(match.group("path") or "") if match else []
    unknown = re.match(r"Object contains unknown field `([^`]+)`", what)
    if unknown:
        key = unknown.group(1)
        parts.append(key)
        hint = ""
        if key.lower() in PROVIDERS_ELSEWHERE:
            hint = f" ('{key}' is a provider this gateway does not serve; use vertex or anthropic)"
        parent = _type_at(parts[:-1])
        known = (
            sorted(typing.get_type_hints(parent))
            if isinstance(parent, type) and issubclass(parent, msgspec.Struct)
            else []
        )
        fix = f"; known keys here: {', '.join(known)}" if known else ""
        return f"{_render_path(parts)}: unknown key{hint}; remove it{fix}"
    missing = re.match(r"Object missing required field `([^`]+)`", what)
    if missing:
        parts.append(missing.group(1))
        expected = _type_at(parts)
        return f"{_render_path(parts)}: required key is missing; add it ({_describe(expected)})"
    where = _render_path(parts) or "(top level)"
    expected = _type_at(parts)
    value = _value_at(raw, parts)
    if expected is not None and (what.startswith("Expected") or what.startswith("Invalid enum value")):
        return f"{where}: expected {_describe(expected)}, got {short(value)}"
    return f"{where}: {what[0].lower() + what[1:]} (got {short(value)})"


# --- cross-field rules of CONFIG.md ------------------------------------------------
